"""``python sam_render.py TEMPLATE PARAMETERS_JSON``: the template as CloudFormation receives it, on stdout as JSON.

Runs under .venv-sam/ (the SAM CLI's virtualenv: its aws-sam-translator pins a pydantic the app's cannot share).
It is the translation `sam deploy` has CloudFormation make: SAM resources become plain CloudFormation, with the
parameter values given; each image function gets the ImageUri that `sam build` would fill in.
"""

from __future__ import annotations

import json
import os
import sys

import yaml
from samtranslator.public.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that turns CloudFormation short-form tags (!Ref, !Sub ...) into their long form."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        return {key: value.split(".", 1) if suffix == "GetAtt" else value}
    if isinstance(node, yaml.SequenceNode):
        return {key: loader.construct_sequence(node, deep=True)}
    return {key: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _tag)


class _NoManagedPolicies:
    def load(self) -> dict:
        return {}  # the template names managed policies by ARN only, so no IAM lookup is needed


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        template = yaml.load(handle, Loader=_CfnLoader)  # a SafeLoader subclass
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and properties.get("PackageType") == "Image":
            properties.setdefault("ImageUri", "123456789012.dkr.ecr.us-east-1.amazonaws.com/sentiment:tflite")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        rendered = transform(template, json.loads(sys.argv[2]), _NoManagedPolicies())
    except InvalidDocumentException as exc:
        print("\n".join(str(cause) for cause in exc.causes), file=sys.stderr)
        return 1
    json.dump(rendered, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
