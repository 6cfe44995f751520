"""Add settings that pipeline/config.py reads but the deploy files lack, with their defaults.

``python deploy/sync_settings.py`` prints what is missing; ``--write`` appends it to the compose
file's ``x-imageopt-env`` block and to ``deploy/k8s/base/config.env``. Review the values after:
addresses and ports that must differ in a container (``*_HOST=0.0.0.0``) need a hand.
``tests/integration/test_deploy_manifests.py`` fails until nothing is missing.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings  # noqa: E402 - after the path is set

COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
CONFIG_ENV = ROOT / "deploy" / "k8s" / "base" / "config.env"
SECRETS = {
    "DATABASE_URL",
    "REDIS_URL",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "REPLICATE_API_TOKEN",
    "REPLICATE_WEBHOOK_SECRET",
    "IMAGEOPT_CALLBACK_SECRET",
}
ANCHOR_END = "\n\n# One image for every process kind"


def _default(value: object) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def main(argv: list[str]) -> int:
    """Print (and with ``--write`` add) the missing settings; returns the exit code."""
    compose, config_env = COMPOSE.read_text(), CONFIG_ENV.read_text()
    in_compose = set(re.findall(r"^  ([A-Z][A-Z0-9_]+):", compose, re.M))
    in_config = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", config_env, re.M))
    add_compose, add_config = [], []
    for field in Settings.model_fields.values():
        alias, default = str(field.validation_alias), _default(field.default)
        if alias not in in_compose:
            add_compose.append(f'  {alias}: "${{{alias}:-{default}}}"')
        if alias not in in_config and alias not in SECRETS:
            add_config.append(f"{alias}={default}")
    for line in add_compose:
        print(f"compose.yaml: {line.strip()}")
    for line in add_config:
        print(f"config.env:   {line}")
    if "--write" in argv:
        if add_compose:
            block = "\n" + "\n".join(add_compose) + ANCHOR_END
            COMPOSE.write_text(compose.replace(ANCHOR_END, block, 1))
        if add_config:
            CONFIG_ENV.write_text(config_env + "\n".join(add_config) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
