"""Which schema, Redis namespace and bucket ``imageopt demo`` picks, and which it refuses."""

from __future__ import annotations

import re

import pytest

from devstack.targets import DemoTargetRefused, DemoTargets, resolve_targets
from pipeline.config import Settings


def _settings(
    schema: str = "imageopt", namespace: str = "imageopt", bucket: str = "imageopt"
) -> Settings:
    return Settings(db_schema=schema, redis_namespace=namespace, s3_bucket=bucket)


def test_production_defaults_are_passed_over_for_the_demo_defaults() -> None:
    targets = resolve_targets(_settings())
    assert (targets.schema, targets.namespace, targets.bucket) == (
        "imageopt_demo",
        "imageopt-demo",
        "imageopt-demo",
    )
    assert targets.notes == (
        "IMAGEOPT_DB_SCHEMA=imageopt is not a demo schema; the demo uses imageopt_demo",
        "IMAGEOPT_REDIS_NAMESPACE=imageopt is not a demo namespace; the demo uses imageopt-demo",
        "S3_BUCKET=imageopt is not a demo bucket; the demo uses imageopt-demo",
    )


def test_configured_demo_names_are_used() -> None:
    targets = resolve_targets(_settings("shop_demo", "shop-demo", "shop-demo"))
    assert targets == DemoTargets("shop_demo", "shop-demo", "shop-demo")


def test_flags_win_over_configuration() -> None:
    targets = resolve_targets(
        _settings("a_demo", "a-demo", "a-demo"),
        schema="b_demo",
        namespace="b-demo",
        bucket="b-demo",
    )
    assert targets == DemoTargets("b_demo", "b-demo", "b-demo")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"schema": "imageopt"}, "--schema 'imageopt' is not a demo schema"),
        ({"namespace": "imageopt"}, "--namespace 'imageopt' is not a demo namespace"),
        ({"bucket": "imageopt"}, "--bucket 'imageopt' is not a demo bucket"),
        ({"schema": "public"}, "--schema 'public' is not a demo schema"),
        ({"schema": "Demo"}, "is not a demo schema"),  # case matters: Demo is not demo
        ({"schema": "x_demo; drop"}, "--schema 'x_demo; drop': use"),
        # Postgres would cut it to 63 characters: the name of a schema that is not the demo's
        ({"schema": "imageopt" + "_" * 55 + "_demo"}, "at most 63 characters"),
        # glob characters would widen the SCAN pattern that resets the namespace
        ({"namespace": "demo*"}, "--namespace 'demo*': use"),
        ({"namespace": "demo?"}, "--namespace 'demo?': use"),
        ({"namespace": "[d]demo"}, "--namespace '[d]demo': use"),
        ({"namespace": "demo:x"}, "--namespace 'demo:x': use"),
        ({"bucket": "Demo-Bucket-demo"}, "--bucket 'Demo-Bucket-demo': use"),
        ({"bucket": "demo_"}, "--bucket 'demo_': use"),
    ],
)
def test_flags_naming_no_demo_target_are_refused(flags: dict[str, str], message: str) -> None:
    with pytest.raises(DemoTargetRefused, match=re.escape(message)):
        resolve_targets(_settings(), **flags)


def test_a_malformed_configured_demo_name_is_refused_by_its_variable() -> None:
    with pytest.raises(DemoTargetRefused, match="IMAGEOPT_REDIS_NAMESPACE 'demo\\*': use"):
        resolve_targets(_settings(namespace="demo*"))
