// imageopt console: sign in with the store's API key (POST /api/session) and sign out
// (DELETE /api/session). The key goes to the server once; the browser keeps only the
// HttpOnly session cookie, which makes the page the store's: its history, presets panel and
// quota. The page is rendered for whoever is signed in, so both actions reload it. Strings come
// from the page's catalogue through console.js (window.imageoptConsole: t, api, errorText).
"use strict";

(function () {
  const shared = window.imageoptConsole;
  if (!shared) return;
  const { t, api, errorText } = shared;
  const form = document.getElementById("signin-form");
  const signOut = document.getElementById("signout");

  if (form) {
    const input = document.getElementById("signin-key");
    const submit = document.getElementById("signin-submit");
    const box = document.getElementById("signin-message");
    const say = (text) => {
      box.textContent = text;
      box.hidden = !text;
      input.setAttribute("aria-invalid", text ? "true" : "false");
      if (text) input.focus();
    };
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) { say(t("session.keyMissing")); return; }
      say("");
      submit.disabled = true;
      try {
        await api("/api/session", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ key: key }),
        });
        input.value = "";
        window.location.reload();
      } catch (e) {
        submit.disabled = false;
        say(e.type === "unauthorized" ? t("session.wrongKey") : errorText(e));
      }
    });
    // Opening the form puts the cursor in the key field (keyboard users land where they type).
    document.getElementById("signin").addEventListener("toggle", (event) => {
      if (event.target.open) input.focus();
    });
  }

  if (signOut) {
    signOut.addEventListener("click", async () => {
      signOut.disabled = true;
      try {
        await api("/api/session", { method: "DELETE" });
      } catch (e) {
        // Signed out or not, the reloaded page shows who this browser is now.
      }
      window.location.reload();
    });
  }
})();
