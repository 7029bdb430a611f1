#!/usr/bin/env python3
"""Smoke deployment of deploy/syncsphere.yaml into moto's CloudFormation (issue 18).

    cfn-smoke.py --endpoint http://127.0.0.1:PORT deploy/syncsphere.yaml
    cfn-smoke.py --endpoint http://127.0.0.1:PORT --self-test deploy/syncsphere.yaml

Run with moto's own Python (scripts/lib.sh `ensure_moto`: boto3, moto and cfn-lint are in that
venv): the supported subset is read from moto's code at run time.

What it does: loads the template (cfn-lint's loader, or PyYAML with the short-form tags), keeps
the resources whose types moto's CloudFormation creates (the model map of
moto/cloudformation/parsing.py, `get_model_map()`, built from
`CloudFormationModel.__subclasses__()`; types outside it are skipped by moto with only a log
warning, and the stack still reaches CREATE_COMPLETE), replaces every reference to a dropped
resource by a recognisable `smoke-placeholder-<Name>` string, works around what moto's
intrinsic-function evaluator cannot do (`Fn::Cidr`, dotted attributes inside `Fn::Sub`, the
`{{resolve:secretsmanager:…}}` dynamic references), creates the stack, and then fails unless
every kept resource is CREATE_COMPLETE with a physical id AND the real objects, described
through the service APIs, carry the properties that matter (a resource moto accepted but left
blank or wrong fails here). `--self-test` deploys a mutated template and fails unless the
checks catch each mutation.

What moto does not model, so what this smoke test does NOT prove:
  * Amazon Cognito (user pool, client, the REST authorizer): AWS::Cognito::* is not in moto's
    CloudFormation model map; the pool's settings are checked by nobody here.
  * the WebSocket API (AWS::ApiGatewayV2::*), the VPC link (AWS::ApiGateway::VpcLink), the REST
    stage with its throttling and access logs, the authorizer, the API Gateway account setting;
  * ElastiCache (replication group, TLS, AUTH token, subnet group);
  * Secrets Manager (secrets and their attachment): the tasks' `secrets` point at placeholders;
  * the S3 bucket policy (AWS::S3::BucketPolicy is not in the map), autoscaling
    (AWS::ApplicationAutoScaling::*);
  * the NLB as such: moto's CloudFormation makes every ELBv2 load balancer an application LB,
    so its TCP listeners are dropped; subnet route table associations (moto reports them
    CREATE_COMPLETE but no route table shows them: SILENT_TYPES);
  * many properties of supported resources, which moto 5.2.5's CloudFormation ignores: S3
    versioning, public access block, lifecycle, ownership; RDS security groups, port, deletion
    protection; ECS launch type, network configuration, load balancers, task and execution
    roles; log group KMS keys; security group egress; REST API binary media types and VPC-link
    integrations; and more. Each is printed as a "gap" (a gap whose value does arrive fails, so
    the list cannot go stale), and the top-level properties moto never reads are listed from
    moto's source at run time;
  * KMS key policies and rotation as enforcement, real IAM policy evaluation (moto stores the
    policy documents; nothing here proves they allow or deny what they should), networking
    reachability (routes, security groups are stored, not enforced), Fargate actually running.
It proves: the template's supported part deploys in CloudFormation's dependency order, the
intrinsic functions among supported resources resolve, and the "ok" properties arrive.
"""

from __future__ import annotations

import argparse
import ast
import copy
import ipaddress
import json
import os
import re
import sys
import time
import uuid

IMAGE_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/syncsphere-server:smoke"
REGION = "us-east-1"
PLACEHOLDER = "smoke-placeholder-"

# Types that ARE in moto's CloudFormation model map but that moto's CloudFormation reports
# CREATE_COMPLETE for without creating anything the service shows. Found by deploying the
# template's types into moto 5.2.5 and describing every resource (the checks below); the
# self-test keeps these and proves the check fails on them.
SILENT_TYPES: dict[str, str] = {
    "AWS::EC2::SubnetRouteTableAssociation": (
        "in moto's map, but moto 5.2.5 files it in a side table DescribeRouteTables never shows "
        "(the route table has no association; physical id = the route table's id)"
    ),
}

# Kept types whose Ref moto cannot evaluate into something the referring resource accepts:
# references to them are removed (AWS::NoValue), with the reason printed.
MOTO_REF_GAPS = {
    "AWS::RDS::DBParameterGroup": (
        "moto's Ref yields the model object, not the group's name (its class has no "
        "physical_resource_id), and moto's DBInstance then fails; the reference is removed and "
        "the group is checked on its own (so the DB instance's group is NOT checked)"
    ),
}

# Short-form tags of CloudFormation YAML → long form (used only without cfn-lint).
SHORT_TAGS = [
    "Ref", "Condition", "Base64", "Cidr", "FindInMap", "GetAZs", "GetAtt", "ImportValue",
    "Join", "Select", "Split", "Sub", "Transform", "And", "Equals", "If", "Not", "Or",
    "ToJsonString", "Length",
]


# ---------------------------------------------------------------------------- loading

def load_template(path: str) -> tuple[dict, str]:
    """The template as plain JSON-able data in the long form of every intrinsic function."""
    try:
        from cfnlint.decode import cfn_yaml  # type: ignore

        data, loader = cfn_yaml.load(path), "cfn-lint"
    except ImportError:
        data, loader = _load_with_pyyaml(path), "PyYAML"
    # cfn-lint's nodes subclass dict/str/list; a JSON round trip makes them plain.
    return json.loads(json.dumps(data)), loader


def _load_with_pyyaml(path: str) -> dict:
    import yaml  # type: ignore

    class Loader(yaml.SafeLoader):
        pass

    def make(tag: str):
        key = "Ref" if tag == "Ref" else "Condition" if tag == "Condition" else f"Fn::{tag}"

        def construct(loader, node):
            if isinstance(node, yaml.ScalarNode):
                value = loader.construct_scalar(node)
                if tag == "GetAtt":  # A.B.C → [A, "B.C"] (the long form of dotted attributes)
                    value = value.split(".", 1)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)
            return {key: value}

        return construct

    for tag in SHORT_TAGS:
        Loader.add_constructor(f"!{tag}", make(tag))
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=Loader)  # noqa: S506 (SafeLoader subclass)


# ---------------------------------------------------------------------------- moto's map

def moto_model_map() -> dict[str, type]:
    """CloudFormation type → moto model class: exactly the map moto's CloudFormation uses to
    decide whether it creates a resource (parsing.resource_class_from_type)."""
    from moto.cloudformation import parsing  # imports every service module it supports

    return {t: model for t, model in parsing.get_model_map().items()
            if re.fullmatch(r"AWS::[A-Za-z0-9]+::[A-Za-z0-9]+", t) and t != "AWS::SERVICE::RESOURCE"}


def print_model_map(model_map: dict) -> None:
    import moto

    by_service: dict[str, list[str]] = {}
    for t in sorted(model_map):
        _, service, name = t.split("::")
        by_service.setdefault(service, []).append(name)
    print(f"moto {moto.__version__}: its CloudFormation creates {len(model_map)} resource types "
          "(moto.cloudformation.parsing.get_model_map()):")
    for service, names in by_service.items():
        print(f"  {service}: {', '.join(names)}")


# ---------------------------------------------------------------------------- the subset

class Rewriter:
    """Rewrites the template into what moto can deploy; records each change it makes."""

    def __init__(self, template: dict, params: dict, dropped: set[str]):
        self.template = template
        self.params = params
        self.dropped = dropped
        self.types = {n: r["Type"] for n, r in template["Resources"].items()}
        self.notes: dict[str, set[str]] = {}
        self.sub_vars = 0

    def note(self, kind: str, what: str) -> None:
        self.notes.setdefault(kind, set()).add(what)

    def placeholder(self, name: str, attr: str | None = None) -> str:
        self.note("references to dropped resources replaced", name)
        return f"{PLACEHOLDER}{name}" + (f".{attr}" if attr else "")

    def param_value(self, node):
        """A literal, or a Ref to a parameter or a pseudo parameter; else None."""
        if isinstance(node, (str, int)):
            return node
        if isinstance(node, dict) and list(node) == ["Ref"]:
            name = node["Ref"]
            if name in self.params:
                return self.params[name]
        return None

    def walk(self, node):
        if isinstance(node, list):
            return [self.walk(v) for v in self.list_no_values(node)]
        if isinstance(node, str):
            return self.dynamic_refs(node)
        if not isinstance(node, dict):
            return node
        if list(node) == ["Ref"] and node["Ref"] in self.dropped:
            return self.placeholder(node["Ref"])
        if list(node) == ["Ref"] and self.types.get(node["Ref"]) in MOTO_REF_GAPS:
            t = self.types[node["Ref"]]
            self.note("references removed (moto cannot evaluate them)", f"Ref {node['Ref']} ({t}): {MOTO_REF_GAPS[t]}")
            return {"Ref": "AWS::NoValue"}
        if list(node) == ["Fn::GetAtt"]:
            target, attr = self.getatt_parts(node["Fn::GetAtt"])
            if target in self.dropped:
                return self.placeholder(target, attr)
            return {"Fn::GetAtt": [target, attr]}
        if list(node) == ["Fn::Sub"]:
            return self.sub(node["Fn::Sub"])
        if list(node) == ["Fn::Cidr"]:
            cidrs = self.cidr(node["Fn::Cidr"])
            if cidrs is not None:
                return cidrs
        return {k: self.walk(v) for k, v in node.items()}

    def list_no_values(self, items: list) -> list:
        """moto keeps an Fn::If that yields AWS::NoValue inside a list as a null element (a
        blank environment entry, for one); CloudFormation removes it. Decided here instead."""
        out = []
        conditions = self.template.get("Conditions", {})
        for item in items:
            if isinstance(item, dict) and list(item) == ["Fn::If"]:
                cond, yes, no = item["Fn::If"]
                if {"Ref": "AWS::NoValue"} in (yes, no):
                    chosen = yes if eval_condition(conditions[cond], self.params, conditions) else no
                    self.note("Fn::If over AWS::NoValue inside lists decided here (moto leaves a null element)", cond)
                    if chosen == {"Ref": "AWS::NoValue"}:
                        continue
                    item = chosen
            out.append(item)
        return out

    @staticmethod
    def getatt_parts(value) -> tuple[str, str]:
        if isinstance(value, str):
            value = value.split(".", 1)
        return value[0], value[1]

    def cidr(self, args):
        """Fn::Cidr, which moto 5.2.5 does not evaluate (Fn::Select over it fails)."""
        block, count, bits = (self.param_value(a) for a in args)
        if block is None or count is None or bits is None:
            return None
        net = ipaddress.ip_network(str(block))
        prefix = net.max_prefixlen - int(bits)
        self.note("Fn::Cidr evaluated here (moto cannot)", f"{block} × {count} /{prefix}")
        return [str(n) for n in list(net.subnets(new_prefix=prefix))[: int(count)]]

    def sub(self, value):
        """Fn::Sub: ${Dropped} / ${Dropped.Attr} → placeholder; ${Kept.A.B} → a variable bound to
        the long-form GetAtt (moto splits dotted names at every dot)."""
        text, variables = (value, {}) if isinstance(value, str) else (value[0], dict(value[1]))
        variables = {k: self.walk(v) for k, v in variables.items()}

        def replace(m: re.Match) -> str:
            expr = m.group(1)
            if expr.startswith("!"):
                return m.group(0)
            name, _, attr = expr.partition(".")
            if name in variables:
                return m.group(0)
            if name in self.dropped:
                return self.placeholder(name, attr or None)
            if "." in attr:
                var = f"SmokeAttr{self.sub_vars}"
                self.sub_vars += 1
                variables[var] = {"Fn::GetAtt": [name, attr]}
                self.note("dotted attributes in Fn::Sub bound to long-form Fn::GetAtt", expr)
                return "${" + var + "}"
            return m.group(0)

        text = self.dynamic_refs(text)
        text = re.sub(r"\$\{([^}]*)\}", replace, text)
        return {"Fn::Sub": [text, variables] if variables else text}

    def dynamic_refs(self, text: str) -> str:
        """{{resolve:…}} is passed through literally by moto: make that visible."""
        def replace(m: re.Match) -> str:
            self.note("dynamic references replaced (moto does not resolve them)", m.group(0))
            ref = re.sub(r"[^A-Za-z0-9-]+", "-", m.group(1).replace("${", "")).strip("-")
            return f"{PLACEHOLDER}resolve-{ref}"

        return re.sub(r"\{\{resolve:(.*?)\}\}", replace, text)


def template_params(template: dict, overrides: dict) -> dict:
    params = {k: v.get("Default") for k, v in template.get("Parameters", {}).items()}
    params.update(overrides)
    params.update({"AWS::Region": REGION, "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com"})
    return params


def smoke_subset(template: dict, model_map: dict, overrides: dict, quiet=False, keep_silent=False) -> dict:
    """The template cut down to what moto creates, with the changes printed."""
    template = copy.deepcopy(template)
    resources = template["Resources"]
    dropped: dict[str, tuple[str, str]] = {}
    for name, res in resources.items():
        t = res["Type"]
        if t not in model_map:
            dropped[name] = (t, "not in moto's CloudFormation model map (moto skips it, stack still CREATE_COMPLETE)")
        elif t in SILENT_TYPES and not keep_silent:
            dropped[name] = (t, SILENT_TYPES[t])
    dropped.update(moto_refusals(resources, dropped))
    rw = Rewriter(template, template_params(template, overrides), set(dropped))
    kept = {}
    for name, res in resources.items():
        if name in dropped:
            continue
        res = dict(res)
        if "Properties" in res:
            res["Properties"] = rw.walk(res["Properties"])
        if res["Type"] == "AWS::KMS::Key" and isinstance(res.get("Properties", {}).get("KeyPolicy"), dict):
            # moto stores an object-form KeyPolicy unparsed, and every KMS call on the key then
            # fails (json.loads of a dict, HTTP 500): hand it the policy as a JSON string.
            res["Properties"] = {**res["Properties"], "KeyPolicy": {"Fn::ToJsonString": res["Properties"]["KeyPolicy"]}}
            rw.note("KMS KeyPolicy passed as a JSON string (moto's DescribeKey fails on the object form)", name)
        deps = res.get("DependsOn")
        if deps is not None:
            deps = [deps] if isinstance(deps, str) else deps
            gone = [d for d in deps if d in dropped]
            for d in gone:
                rw.note("DependsOn on dropped resources removed", d)
            deps = [d for d in deps if d not in dropped]
            if deps:
                res["DependsOn"] = deps
            else:
                del res["DependsOn"]
        kept[name] = res
    template["Resources"] = kept
    outputs, dropped_outputs = {}, []
    for key, out in template.get("Outputs", {}).items():
        refs = referenced_names(out.get("Value"))
        if refs & set(dropped):
            dropped_outputs.append(f"{key} (needs {', '.join(sorted(refs & set(dropped)))})")
        else:
            outputs[key] = rw.walk(out)
    template["Outputs"] = outputs
    template.pop("Metadata", None)
    if not quiet:
        print_subset_report(resources, dropped, rw, dropped_outputs)
    return template


def moto_refusals(resources: dict, dropped: dict) -> dict[str, tuple[str, str]]:
    """Kept-type resources moto's CloudFormation refuses because it models something else."""
    out = {}
    for name, res in resources.items():
        props = res.get("Properties", {})
        if name in dropped or res["Type"] != "AWS::ElasticLoadBalancingV2::Listener":
            continue
        lb = referenced_names(props.get("LoadBalancerArn"))
        if any(resources.get(n, {}).get("Properties", {}).get("Type") == "network" for n in lb):
            out[name] = (res["Type"], "on a network LB: moto's CloudFormation ignores the "
                         "LoadBalancer's Type (it creates an application LB) and then refuses "
                         "TCP listeners ('Listener protocol must be one of HTTP, HTTPS')")
    return out


def referenced_names(node) -> set[str]:
    found: set[str] = set()
    if isinstance(node, list):
        for v in node:
            found |= referenced_names(v)
    elif isinstance(node, dict):
        if list(node) == ["Ref"]:
            found.add(node["Ref"])
        elif list(node) == ["Fn::GetAtt"]:
            found.add(Rewriter.getatt_parts(node["Fn::GetAtt"])[0])
        elif list(node) == ["Fn::Sub"]:
            text = node["Fn::Sub"] if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"][0]
            found |= {m.split(".")[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
            if isinstance(node["Fn::Sub"], list):
                found |= referenced_names(node["Fn::Sub"][1])
        else:
            for v in node.values():
                found |= referenced_names(v)
    return found


def print_subset_report(resources, dropped, rw: Rewriter, dropped_outputs) -> None:
    kept_types = sorted({r["Type"] for n, r in resources.items() if n not in dropped})
    print(f"\nsupported subset of the template ({len(resources) - len(dropped)} of {len(resources)} resources, "
          f"{len(kept_types)} types):")
    for t in kept_types:
        names = [n for n, r in resources.items() if r["Type"] == t and n not in dropped]
        print(f"  {t}: {', '.join(names)}")
    print(f"\ndropped ({len(dropped)} resources):")
    by_type: dict[str, list[str]] = {}
    reasons = {}
    for name, (t, why) in dropped.items():
        by_type.setdefault(t, []).append(name)
        reasons[t] = why
    for t in sorted(by_type):
        print(f"  {t}: {', '.join(by_type[t])} — {reasons[t]}")
    for kind, items in rw.notes.items():
        print(f"\n{kind}:")
        for item in sorted(items):
            print(f"  {item}")
    if dropped_outputs:
        print("\noutputs dropped (they need a dropped resource):")
        for o in dropped_outputs:
            print(f"  {o}")
    print()


def moto_ignored_properties(template: dict, model_map_classes: dict) -> dict[str, list[str]]:
    """Per kept type: the template's top-level properties that moto's
    create_from_cloudformation_json never names (read from moto's source at run time). A
    heuristic: a class that passes `**properties` on is reported as unknown."""
    import inspect

    out: dict[str, list[str]] = {}
    for res in template["Resources"].values():
        t = res["Type"]
        if t in out:
            continue
        src = inspect.getsource(model_map_classes[t].create_from_cloudformation_json)
        if "**properties" in src:
            out[t] = ["(passes **properties on: cannot tell)"]
            continue
        named = set(re.findall(r'"([A-Z][A-Za-z0-9]+)"', src))
        props = set()
        for r in template["Resources"].values():
            if r["Type"] == t:
                props |= set(r.get("Properties", {}))
        out[t] = sorted(props - named)
    return out


# ---------------------------------------------------------------------------- deployment

def clients(endpoint: str):
    import boto3

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        os.environ[k] = v
    session = boto3.session.Session(region_name=REGION)
    return lambda name: session.client(name, endpoint_url=endpoint)


def deploy(client, name: str, template: dict, timeout: float) -> tuple[str, list]:
    cf = client("cloudformation")
    cf.create_stack(StackName=name, TemplateBody=json.dumps(template),
                    Parameters=[{"ParameterKey": "ImageUri", "ParameterValue": IMAGE_URI}])
    deadline = time.monotonic() + timeout
    while True:
        stack = cf.describe_stacks(StackName=name)["Stacks"][0]
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    if status != "CREATE_COMPLETE":
        print(f"stack {name}: {status} {stack.get('StackStatusReason', '')}")
        for ev in cf.describe_stack_events(StackName=name)["StackEvents"]:
            print(f"  {ev['LogicalResourceId']} {ev['ResourceStatus']} {ev.get('ResourceStatusReason', '')}")
    return status, stack.get("Outputs", [])


def probe_dropped_types(client, types: list[str], timeout: float) -> None:
    """Shows that moto skips the dropped types yet reports CREATE_COMPLETE: a stack of one
    bare resource of each (moto does not read their properties at all)."""
    if not types:
        return
    name = f"smoke-probe-{uuid.uuid4().hex[:8]}"
    tpl = {"Resources": {f"R{i}": {"Type": t, "Properties": {}} for i, t in enumerate(types)}}
    status, _ = deploy(client, name, tpl, timeout)
    res = client("cloudformation").list_stack_resources(StackName=name)["StackResourceSummaries"]
    blank = sum(1 for r in res if not r.get("PhysicalResourceId"))
    print(f"probe: a stack of one bare resource of each of the {len(types)} dropped types is {status}; "
          f"moto lists {len(res)} resources, {blank} of them with no physical id and no logical id "
          "(nothing was created)\n")
    delete_stack(client, name)


def delete_stack(client, name: str) -> None:
    """Best effort: moto 5.2.5 refuses to delete this stack's VPC (DependencyViolation, it
    deletes in the wrong order); the caller stops moto anyway."""
    try:
        client("cloudformation").delete_stack(StackName=name)
    except Exception as e:  # noqa: BLE001
        print(f"(stack {name} not deleted: {e}; it goes with the moto server)")


# ---------------------------------------------------------------------------- checks

class Checks:
    """Live checks (must hold) and gaps (what moto 5.2.5 does not carry through; a gap whose
    value does come through fails too, so the gap list cannot go stale)."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed: list[str] = []
        self.gaps: list[str] = []

    def live(self, name: str, actual, expected) -> None:
        if actual == expected:
            self.passed.append(name)
            print(f"  ok    {name}")
        else:
            self.failed.append(name)
            print(f"  FAIL  {name}: got {actual!r}, want {expected!r}")

    def gap(self, name: str, actual, expected, why: str) -> None:
        if actual == expected:
            self.failed.append(name)
            print(f"  FAIL  {name}: listed as not modelled by moto, but it came through ({actual!r}): make it a live check")
        else:
            self.gaps.append(f"{name} — {why}")
            print(f"  gap   {name}: not checkable, {why} (moto gives {actual!r})")

    def call(self, name: str, fn):
        """The result of a describe call, or None (a failure) if the object is missing."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 (any API error means the object is not there)
            self.failed.append(name)
            print(f"  FAIL  {name}: {type(e).__name__}: {e}")
            return None


def eval_condition(cond, params, conditions) -> bool:
    op, args = next(iter(cond.items()))
    if op == "Condition":
        return eval_condition(conditions[args], params, conditions)
    vals = [eval_condition(a, params, conditions) if isinstance(a, dict) and any(k.startswith("Fn::") or k == "Condition" for k in a)
            else params.get(a["Ref"]) if isinstance(a, dict) and "Ref" in a else a for a in args]
    if op == "Fn::Equals":
        return str(vals[0]) == str(vals[1])
    if op == "Fn::Not":
        return not vals[0]
    if op == "Fn::And":
        return all(vals)
    if op == "Fn::Or":
        return any(vals)
    raise ValueError(op)


def expected_env_names(template: dict, logical: str, params: dict) -> set[str]:
    names = set()
    conditions = template.get("Conditions", {})
    for entry in template["Resources"][logical]["Properties"]["ContainerDefinitions"][0]["Environment"]:
        if "Fn::If" in entry:
            cond, yes, no = entry["Fn::If"]
            entry = yes if eval_condition(conditions[cond], params, conditions) else no
            if entry == {"Ref": "AWS::NoValue"}:
                continue
        names.add(entry["Name"])
    return names


def run_checks(client, stack: str, kept: dict, original: dict, outputs: list, moto_classes: dict) -> Checks:
    ck = Checks()
    params = template_params(original, {"ImageUri": IMAGE_URI})
    cf = client("cloudformation")
    summaries = cf.list_stack_resources(StackName=stack)["StackResourceSummaries"]
    by_logical = {s["LogicalResourceId"]: s for s in summaries}
    phys = {k: v.get("PhysicalResourceId") or "" for k, v in by_logical.items()}

    print(f"\nstack resources ({len(kept['Resources'])} kept):")
    # moto's classes without physical_resource_id are listed with an empty one (found in moto's
    # code at run time); each of those is found through its service below instead.
    no_phys = {t for t, cls in moto_classes.items() if not hasattr(cls, "physical_resource_id")}
    for name, res in kept["Resources"].items():
        s = by_logical.get(name)
        ck.live(f"{name} listed and CREATE_COMPLETE", s and s["ResourceStatus"], "CREATE_COMPLETE")
        if res["Type"] in no_phys:
            ck.gap(f"{name} has a physical id", bool(phys.get(name)), True,
                   f"moto's {moto_classes[res['Type']].__name__} has no physical_resource_id; it is looked up below")
        else:
            ck.live(f"{name} has a physical id", bool(phys.get(name)), True)
    extra = sorted(n for n in by_logical if n not in kept["Resources"])
    ck.live("no resources beyond the subset", extra, [])

    outs = {o["OutputKey"]: o.get("OutputValue", "") for o in outputs}
    print("\noutputs:")
    ck.live("outputs: all kept outputs present", sorted(outs), sorted(kept.get("Outputs", {})))
    ck.live("outputs: none blank or placeholder", [k for k, v in outs.items() if not v or PLACEHOLDER in v], [])

    check_s3(client, ck, phys, params, outs)
    check_rds(client, ck, phys, params, outs, stack)
    check_network(client, ck, phys, params, kept)
    check_ecs(client, ck, phys, params, original, outs)
    check_elb(client, ck, phys)
    check_iam(client, ck, phys)
    check_logs_kms(client, ck, phys, params)
    check_rest_api(client, ck, phys)
    return ck


def check_s3(client, ck: Checks, phys, params, outs) -> None:
    print("\nS3 (BlobBucket):")
    s3, bucket = client("s3"), phys["BlobBucket"]
    ck.live("bucket output is the bucket", outs.get("BlobBucketName"), bucket)
    if ck.call("bucket exists", lambda: s3.head_bucket(Bucket=bucket)) is None:
        return
    enc = ck.call("bucket encryption", lambda: s3.get_bucket_encryption(Bucket=bucket))
    rule = (enc or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [{}])[0]
    ck.live("default encryption AES256", rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm"), "AES256")
    # moto 5.2.5's FakeBucket.create_from_cloudformation_json reads BucketEncryption and Tags
    # only: versioning, the public access block, lifecycle and ownership are left blank.
    why = "moto's CloudFormation S3 bucket reads only BucketEncryption and Tags"
    ck.gap("bucket key enabled", rule.get("BucketKeyEnabled"), True, why + " (and drops BucketKeyEnabled)")
    ck.gap("versioning Enabled", s3.get_bucket_versioning(Bucket=bucket).get("Status"), "Enabled", why)
    pab = _or_none(lambda: s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"])
    ck.gap("public access block all true", pab and all(pab.values()) and len(pab) == 4, True, why)
    rules = _or_none(lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]) or []
    abort = any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 for r in rules)
    noncurrent = any(r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") == params["BlobVersionRetentionDays"] for r in rules)
    ck.gap("lifecycle: abort multipart after 1 day, noncurrent expiration", abort and noncurrent, True, why)
    own = _or_none(lambda: s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"][0]["ObjectOwnership"])
    ck.gap("ownership BucketOwnerEnforced", own, "BucketOwnerEnforced", why)


def _or_none(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 (absent configuration)
        return None


def check_rds(client, ck: Checks, phys, params, outs, stack) -> None:
    print("\nRDS (Database):")
    rds = client("rds")
    got = ck.call("DB instance exists", lambda: rds.describe_db_instances(DBInstanceIdentifier=phys["Database"]))
    if got is None:
        return
    db = got["DBInstances"][0]
    ck.live("engine postgres", db.get("Engine"), "postgres")
    ck.live("engine version 16.13", db.get("EngineVersion"), "16.13")
    ck.live("StorageEncrypted", db.get("StorageEncrypted"), True)
    ck.live("not PubliclyAccessible", db.get("PubliclyAccessible"), False)
    ck.live("MultiAZ (DbMultiAz default true)", db.get("MultiAZ"), params["DbMultiAz"] == "true")
    ck.live("instance class", db.get("DBInstanceClass"), params["DbInstanceClass"])
    ck.live("storage gp3", db.get("StorageType"), "gp3")
    ck.live("allocated storage", db.get("AllocatedStorage"), params["DbAllocatedStorage"])
    ck.live("backup retention", db.get("BackupRetentionPeriod"), params["DbBackupRetentionDays"])
    ck.live("database name syncsphere", db.get("DBName"), "syncsphere")
    ck.live("CopyTagsToSnapshot", db.get("CopyTagsToSnapshot"), True)
    ck.live("DatabaseEndpoint output is the address", outs.get("DatabaseEndpoint"), db.get("Endpoint", {}).get("Address"))
    sg = db.get("DBSubnetGroup", {})
    ck.live("subnet group: the two data subnets", sorted(s["SubnetIdentifier"] for s in sg.get("Subnets", [])),
            sorted([phys["DataSubnetA"], phys["DataSubnetB"]]))
    groups = rds.describe_db_parameter_groups()["DBParameterGroups"]
    mine = [g for g in groups if g["DBParameterGroupName"].startswith(f"{stack.lower()}-databaseparameters-")]
    ck.live("parameter group exists, family postgres16", [g["DBParameterGroupFamily"] for g in mine], ["postgres16"])
    if mine:
        ps = rds.describe_db_parameters(DBParameterGroupName=mine[0]["DBParameterGroupName"], Source="user")["Parameters"]
        ck.live("parameter group: rds.force_ssl=1", {p["ParameterName"]: p.get("ParameterValue") for p in ps}.get("rds.force_ssl"), "1")
    # Gaps found in moto 5.2.5's DBInstance.create_from_cloudformation_json (it reads
    # VpcSecurityGroupIds, not VPCSecurityGroups; defaults Port to 3306; no DeletionProtection,
    # MaxAllocatedStorage, PerformanceInsights or log exports), and the group Ref (see above).
    ck.gap("security group is DatabaseSecurityGroup", [g["VpcSecurityGroupId"] for g in db.get("VpcSecurityGroups", [])],
           [phys["DatabaseSecurityGroup"]], "moto reads VpcSecurityGroupIds, the template's VPCSecurityGroups is ignored")
    ck.gap("port 5432", db.get("Endpoint", {}).get("Port"), 5432, "moto's CloudFormation defaults Port to 3306 whatever the engine")
    ck.gap("DeletionProtection", db.get("DeletionProtection"), True, "not read by moto's CloudFormation")
    ck.gap("MaxAllocatedStorage", db.get("MaxAllocatedStorage"), params["DbMaxAllocatedStorage"], "not read by moto's CloudFormation")
    ck.gap("uses the template's parameter group", [g["DBParameterGroupName"] for g in db.get("DBParameterGroups", [])],
           [g["DBParameterGroupName"] for g in mine], "the Ref was removed (moto cannot evaluate it)")
    ck.gap("master user from Secrets Manager", PLACEHOLDER not in db.get("MasterUsername", ""), True,
           "Secrets Manager dynamic references are not resolved by moto (placeholder)")


def kept_of_type(kept: dict, t: str) -> dict:
    return {n: r for n, r in kept["Resources"].items() if r["Type"] == t}


def check_network(client, ck: Checks, phys, params, kept) -> None:
    print("\nVPC:")
    ec2 = client("ec2")
    vpc = ck.call("VPC exists", lambda: ec2.describe_vpcs(VpcIds=[phys["Vpc"]])["Vpcs"][0])
    if vpc is None:
        return
    ck.live("VPC CIDR", vpc["CidrBlock"], params["VpcCidr"])
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [phys["Vpc"]]}])["Subnets"]
    ck.live("6 subnets", len(subnets), 6)
    want = [str(n) for n in list(ipaddress.ip_network(params["VpcCidr"]).subnets(new_prefix=20))[:6]]
    ck.live("subnet CIDRs are the six /20s", sorted(s["CidrBlock"] for s in subnets), sorted(want))
    ck.live("subnets over two AZs", len({s["AvailabilityZone"] for s in subnets}), 2)
    ck.live("subnets have no public address on launch", [s["SubnetId"] for s in subnets if s.get("MapPublicIpOnLaunch")], [])
    nats = ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [phys["Vpc"]]}])["NatGateways"]
    ck.live(f"{params['NatGateways']} NAT gateways in the public subnets", sorted(n["SubnetId"] for n in nats),
            sorted([phys["PublicSubnetA"], phys["PublicSubnetB"]][: int(params["NatGateways"])]))

    def default_route(rt):
        tables = ec2.describe_route_tables(RouteTableIds=[phys[rt]])["RouteTables"]
        routes = [r for r in tables[0]["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
        return routes[0].get("NatGatewayId") or routes[0].get("GatewayId") if routes else None

    ck.live("public route table → internet gateway", default_route("PublicRouteTable"), phys["InternetGateway"])
    ck.live("app route table A → NAT A", default_route("PrivateRouteTableA"), phys["NatGatewayA"])
    ck.live("app route table B → NAT B", default_route("PrivateRouteTableB"),
            phys["NatGatewayB" if int(params["NatGateways"]) == 2 else "NatGatewayA"])
    ck.live("data route table has no default route", default_route("DataRouteTable"), None)
    eps = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [phys["Vpc"]]}])["VpcEndpoints"]
    ck.live("VPC endpoints", sorted((e["ServiceName"], e["VpcEndpointType"]) for e in eps),
            sorted([(f"com.amazonaws.{REGION}.{s}", t) for s, t in
                    [("s3", "Gateway"), ("ecr.api", "Interface"), ("ecr.dkr", "Interface"), ("logs", "Interface"), ("secretsmanager", "Interface")]]))
    task_in = ec2.describe_security_groups(GroupIds=[phys["TaskSecurityGroup"]])["SecurityGroups"][0]["IpPermissions"]
    ck.live("tasks: 8787 in from the app subnets only", sorted((p["FromPort"], r["CidrIp"]) for p in task_in for r in p.get("IpRanges", [])),
            [(8787, want[2]), (8787, want[3])])
    db_in = ec2.describe_security_groups(GroupIds=[phys["DatabaseSecurityGroup"]])["SecurityGroups"][0]["IpPermissions"]
    ck.live("database: 5432 in from the task group only", [(p["FromPort"], g["GroupId"]) for p in db_in for g in p.get("UserIdGroupPairs", [])] +
            [(p["FromPort"], r["CidrIp"]) for p in db_in for r in p.get("IpRanges", [])], [(5432, phys["TaskSecurityGroup"])])
    fl = ec2.describe_flow_logs(FlowLogIds=[phys["FlowLog"]])["FlowLogs"]
    ck.live("flow log: VPC rejects to FlowLogGroup", [(f["ResourceId"], f["TrafficType"], f["LogGroupName"]) for f in fl],
            [(phys["Vpc"], "REJECT", phys["FlowLogGroup"])])
    igw = ec2.describe_internet_gateways(InternetGatewayIds=[phys["InternetGateway"]])["InternetGateways"]
    ck.live("internet gateway attached to the VPC", [a["VpcId"] for g in igw for a in g.get("Attachments", [])], [phys["Vpc"]])
    for nat, eip in (("NatGatewayA", "NatAddressA"), ("NatGatewayB", "NatAddressB")):
        if nat in phys:
            addrs = ec2.describe_addresses(PublicIps=[phys[eip]])["Addresses"]
            gw = ec2.describe_nat_gateways(NatGatewayIds=[phys[nat]])["NatGateways"]
            ck.live(f"{nat} uses {eip}", [a.get("AllocationId") for g in gw for a in g.get("NatGatewayAddresses", [])],
                    [a["AllocationId"] for a in addrs])
    for sg, port in (("EndpointSecurityGroup", 443), ("CacheSecurityGroup", 6379)):
        perms = ec2.describe_security_groups(GroupIds=[phys[sg]])["SecurityGroups"][0]["IpPermissions"]
        ck.live(f"{sg}: {port} in from the task group only", [(p["FromPort"], g["GroupId"]) for p in perms for g in p.get("UserIdGroupPairs", [])] +
                [(p["FromPort"], r["CidrIp"]) for p in perms for r in p.get("IpRanges", [])], [(port, phys["TaskSecurityGroup"])])
    # Every SubnetRouteTableAssociation deployed must be visible (none in the smoke run: the type
    # is in SILENT_TYPES; the self-test deploys them and this check must fail).
    assoc = {n: v for n, v in kept_of_type(kept, "AWS::EC2::SubnetRouteTableAssociation").items()}
    visible = {}
    for n, res in assoc.items():
        rt = phys.get(res["Properties"]["RouteTableId"]["Ref"])
        subnet = phys.get(res["Properties"]["SubnetId"]["Ref"])
        tables = ec2.describe_route_tables(RouteTableIds=[rt])["RouteTables"] if rt else []
        visible[n] = any(a.get("SubnetId") == subnet for t in tables for a in t.get("Associations", []))
    ck.live(f"route table associations deployed ({len(assoc)}) are visible", visible, {n: True for n in assoc})
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [phys["Vpc"]]}])["RouteTables"]
    ck.gap("subnets associated with their route tables", sum(1 for t in tables for a in t.get("Associations", []) if a.get("SubnetId")), 6,
           "AWS::EC2::SubnetRouteTableAssociation " + SILENT_TYPES["AWS::EC2::SubnetRouteTableAssociation"])
    egress = ec2.describe_security_groups(GroupIds=[phys["TaskSecurityGroup"]])["SecurityGroups"][0]["IpPermissionsEgress"]
    ck.gap("tasks: egress 443, 5432, 6379 only", sorted(p.get("FromPort", -1) for p in egress), [443, 5432, 6379],
           "moto's CloudFormation security group ignores SecurityGroupEgress (allow-all egress)")
    dns = ec2.describe_vpc_attribute(VpcId=phys["Vpc"], Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"]
    ck.gap("VPC DNS hostnames", dns, True, "moto's CloudFormation VPC reads CidrBlock, InstanceTenancy and Tags only")


SECRETS = {  # container secret → the template's secret it must come from
    "FilesTaskDefinition": {"PGPASSWORD": "DatabaseSecret", "REDIS_PASSWORD": "CacheSecret"},
    "MaintenanceTaskDefinition": {"PGPASSWORD": "DatabaseSecret", "REDIS_PASSWORD": "CacheSecret"},
    "StateTaskDefinition": {"REDIS_PASSWORD": "CacheSecret", "SYNCSPHERE_APIGW_SECRET": "GatewaySecret"},
}
ROLES = {"FilesTaskDefinition": "files", "MaintenanceTaskDefinition": "files", "StateTaskDefinition": "state"}


def check_ecs(client, ck: Checks, phys, params, original, outs) -> None:
    print("\nECS:")
    ecs = client("ecs")
    clusters = ecs.describe_clusters(clusters=[phys["Cluster"]])["clusters"]
    ck.live("cluster ACTIVE", [c["status"] for c in clusters], ["ACTIVE"])
    ck.live("ClusterName output is the cluster", outs.get("ClusterName"), phys["Cluster"])
    settings = ecs.describe_clusters(clusters=[phys["Cluster"]], include=["SETTINGS"])["clusters"][0].get("settings", [])
    ck.gap("Container Insights enabled", {x["name"]: x["value"] for x in settings}.get("containerInsights"), "enabled",
           "moto's CloudFormation cluster ignores ClusterSettings")
    services = {"FilesService": ("FilesTaskDefinition", params["FilesMinTasks"]),
                "StateService": ("StateTaskDefinition", params["StateMinTasks"]),
                "MaintenanceService": ("MaintenanceTaskDefinition", 1)}
    found = ecs.describe_services(cluster=phys["Cluster"], services=[phys[s] for s in services])["services"]
    by_arn = {s["serviceArn"]: s for s in found}
    for name, (taskdef, count) in services.items():
        svc = by_arn.get(phys[name])
        if svc is None:
            ck.live(f"{name} exists", False, True)
            continue
        ck.live(f"{name}: ACTIVE, desired count {count}", (svc["status"], svc["desiredCount"]), ("ACTIVE", count))
        ck.live(f"{name}: runs {taskdef}", svc["taskDefinition"], phys[taskdef])
        # moto 5.2.5's Service.create_from_cloudformation_json reads Cluster, TaskDefinition and
        # DesiredCount only ("TODO: LoadBalancers").
        why = "moto's CloudFormation ECS service reads Cluster, TaskDefinition, DesiredCount only"
        ck.gap(f"{name}: launch type FARGATE", svc.get("launchType"), "FARGATE", why)
        ck.gap(f"{name}: private subnets, no public IP",
               svc.get("networkConfiguration", {}).get("awsvpcConfiguration", {}).get("assignPublicIp"), "DISABLED", why)
        if name != "MaintenanceService":
            ck.gap(f"{name}: behind its target group", len(svc.get("loadBalancers", [])), 1, why)
    ck.live("MaintenanceServiceName output is the service", outs.get("MaintenanceServiceName"),
            by_arn.get(phys["MaintenanceService"], {}).get("serviceName"))

    for logical in ("FilesTaskDefinition", "MaintenanceTaskDefinition", "StateTaskDefinition"):
        got = ck.call(f"{logical} exists", lambda: ecs.describe_task_definition(taskDefinition=phys[logical]))
        if got is None:
            continue
        td = got["taskDefinition"]
        cds = td.get("containerDefinitions", [])
        ck.live(f"{logical}: one container, named server", [c.get("name") for c in cds], ["server"])
        c = cds[0] if cds else {}
        env = {e["name"]: e.get("value") for e in c.get("environment", [])}
        ck.live(f"{logical}: image", c.get("image"), IMAGE_URI)
        ck.live(f"{logical}: readonlyRootFilesystem", c.get("readonlyRootFilesystem"), True)
        ck.live(f"{logical}: essential", c.get("essential"), True)
        ck.live(f"{logical}: port 8787/tcp", [(p.get("containerPort"), p.get("protocol")) for p in c.get("portMappings", [])], [(8787, "tcp")])
        ck.live(f"{logical}: SYNCSPHERE_ROLE={ROLES[logical]}", env.get("SYNCSPHERE_ROLE"), ROLES[logical])
        ck.live(f"{logical}: the template's environment names", sorted(env), sorted(expected_env_names(original, logical, params)))
        ck.live(f"{logical}: no blank environment value", [k for k, v in env.items() if v in (None, "")], [])
        if "SYNCSPHERE_S3_BUCKET" in env:
            ck.live(f"{logical}: SYNCSPHERE_S3_BUCKET is the bucket", env["SYNCSPHERE_S3_BUCKET"], phys["BlobBucket"])
        if "DATABASE_URL" in env:
            ck.live(f"{logical}: DATABASE_URL names the RDS endpoint", phys["Database"] in env["DATABASE_URL"], True)
        secrets = {s["name"]: s.get("valueFrom", "") for s in c.get("secrets", [])}
        ck.live(f"{logical}: secrets {sorted(SECRETS[logical])}", sorted(secrets), sorted(SECRETS[logical]))
        ck.live(f"{logical}: every secret has a valueFrom", [k for k, v in secrets.items() if not v], [])
        # The secrets themselves are not modelled: valueFrom holds the placeholder of the right secret.
        ck.live(f"{logical}: each valueFrom names its secret",
                {k: f"{PLACEHOLDER}{SECRETS[logical].get(k)}" in v for k, v in secrets.items()},
                {k: True for k in secrets})
        ck.live(f"{logical}: health check runs the healthcheck subcommand", c.get("healthCheck", {}).get("command"),
                ["CMD", "/usr/local/bin/syncsphere-server", "healthcheck"])
        log = c.get("logConfiguration", {})
        ck.live(f"{logical}: awslogs to its log group", (log.get("logDriver"), log.get("options", {}).get("awslogs-group")),
                ("awslogs", phys[logical.replace("TaskDefinition", "Logs")]))
        # moto 5.2.5's TaskDefinition.create_from_cloudformation_json reads Family,
        # ContainerDefinitions, Volumes and Memory only.
        why = "moto's CloudFormation task definition reads Family, ContainerDefinitions, Volumes, Memory only"
        role = "StateTaskRole" if logical == "StateTaskDefinition" else "FilesTaskRole"
        ck.gap(f"{logical}: task role {role}", td.get("taskRoleArn", "").endswith(f"/{phys[role]}"), True, why)
        ck.gap(f"{logical}: execution role", td.get("executionRoleArn", "").endswith(f"/{phys['ExecutionRole']}"), True, why)
        ck.gap(f"{logical}: awsvpc, FARGATE", (td.get("networkMode"), td.get("requiresCompatibilities")), ("awsvpc", ["FARGATE"]), why)


def check_elb(client, ck: Checks, phys) -> None:
    print("\nLoad balancer:")
    elb = client("elbv2")
    got = ck.call("load balancer exists", lambda: elb.describe_load_balancers(LoadBalancerArns=[phys["LoadBalancer"]]))
    if got is not None:
        lb = got["LoadBalancers"][0]
        ck.live("scheme internal", lb.get("Scheme"), "internal")
        ck.live("in the two app subnets", sorted(z["SubnetId"] for z in lb.get("AvailabilityZones", [])),
                sorted([phys["AppSubnetA"], phys["AppSubnetB"]]))
        ck.gap("type network", lb.get("Type"), "network",
               "moto's CloudFormation ignores the LoadBalancer's Type (always an application LB)")
        listeners = elb.describe_listeners(LoadBalancerArn=phys["LoadBalancer"])["Listeners"]
        ck.gap("two TCP listeners 8787 and 8788", sorted((li["Port"], li["Protocol"]) for li in listeners),
               [(8787, "TCP"), (8788, "TCP")], "dropped: moto refuses TCP listeners on the application LB it made")
    for tg_name in ("FilesTargetGroup", "StateTargetGroup"):
        got = ck.call(f"{tg_name} exists", lambda: elb.describe_target_groups(TargetGroupArns=[phys[tg_name]]))
        if got is None:
            continue
        tg = got["TargetGroups"][0]
        ck.live(f"{tg_name}: TCP 8787, ip targets, in the VPC", (tg["Protocol"], tg["Port"], tg["TargetType"], tg["VpcId"]),
                ("TCP", 8787, "ip", phys["Vpc"]))
        ck.live(f"{tg_name}: health check HTTP /healthz", (tg.get("HealthCheckProtocol"), tg.get("HealthCheckPath")), ("HTTP", "/healthz"))
        ck.live(f"{tg_name}: health thresholds 2/2 every 10 s",
                (tg.get("HealthyThresholdCount"), tg.get("UnhealthyThresholdCount"), tg.get("HealthCheckIntervalSeconds")), (2, 2, 10))
        attrs = {a["Key"]: a["Value"] for a in elb.describe_target_group_attributes(TargetGroupArn=phys[tg_name])["Attributes"]}
        ck.gap(f"{tg_name}: deregistration delay 30 s", attrs.get("deregistration_delay.timeout_seconds"), "30",
               "moto's CloudFormation target group ignores TargetGroupAttributes")


def policy_statements(iam, role: str, policy: str) -> list:
    doc = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
    if isinstance(doc, str):
        # moto 5.2.5 stores a CloudFormation inline policy as str(dict), a Python repr, not JSON
        doc = json.loads(doc) if doc.lstrip().startswith('{"') else ast.literal_eval(doc)
    st = doc.get("Statement", [])
    return st if isinstance(st, list) else [st]


def as_list(v):
    return v if isinstance(v, list) else [v]


def check_iam(client, ck: Checks, phys) -> None:
    print("\nIAM:")
    iam = client("iam")
    for role in ("FlowLogRole", "ApiGatewayLogsRole", "ExecutionRole", "FilesTaskRole", "StateTaskRole"):
        ck.call(f"{role} exists", lambda: iam.get_role(RoleName=phys[role]))
    trust = iam.get_role(RoleName=phys["FilesTaskRole"])["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    ck.live("FilesTaskRole trusted by ecs-tasks only", [s["Principal"] for s in trust["Statement"]], [{"Service": "ecs-tasks.amazonaws.com"}])
    ck.live("StateTaskRole inline policies", iam.list_role_policies(RoleName=phys["StateTaskRole"])["PolicyNames"], ["push-through-connections"])
    st = ck.call("StateTaskRole push policy", lambda: policy_statements(iam, phys["StateTaskRole"], "push-through-connections")) or []
    push = [s for s in st if any(a.startswith("execute-api:") for a in as_list(s["Action"]))]
    metric = [s for s in st if s not in push]
    ck.live("StateTaskRole: execute-api:ManageConnections only", sorted(a for s in push for a in as_list(s["Action"])), ["execute-api:ManageConnections"])
    ck.live("StateTaskRole: on @connections of the prod stage", bool(push) and all(r.endswith("/prod/*/@connections/*") for s in push for r in as_list(s["Resource"])), True)
    ck.live("StateTaskRole: otherwise only PutMetricData in the SyncSphere namespace",
            [(as_list(s["Action"]), s.get("Condition")) for s in metric],
            [(["cloudwatch:PutMetricData"], {"StringEquals": {"cloudwatch:namespace": "SyncSphere"}})])
    st = ck.call("FilesTaskRole blobs policy", lambda: policy_statements(iam, phys["FilesTaskRole"], "blobs")) or []
    objects = [s for s in st if "s3:GetObject" in as_list(s["Action"])]
    ck.live("FilesTaskRole: Get/Put/DeleteObject on blobs/* of the bucket",
            [(sorted(as_list(s["Action"])), as_list(s["Resource"])) for s in objects],
            [(["s3:DeleteObject", "s3:GetObject", "s3:PutObject"], [f"arn:aws:s3:::{phys['BlobBucket']}/blobs/*"])])
    listing = [s for s in st if "s3:ListBucket" in as_list(s["Action"])]
    ck.live("FilesTaskRole: ListBucket under blobs/ only",
            [(as_list(s["Resource"]), s.get("Condition")) for s in listing],
            [([f"arn:aws:s3:::{phys['BlobBucket']}"], {"StringLike": {"s3:prefix": ["blobs/*"]}})])
    st = ck.call("ExecutionRole secrets policy", lambda: policy_statements(iam, phys["ExecutionRole"], "read-syncsphere-secrets")) or []
    ck.live("ExecutionRole: GetSecretValue and kms:Decrypt only", sorted(a for s in st for a in as_list(s["Action"])),
            ["kms:Decrypt", "secretsmanager:GetSecretValue"])
    attached = [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=phys["ExecutionRole"])["AttachedPolicies"]]
    ck.gap("ExecutionRole: AmazonECSTaskExecutionRolePolicy attached",
           "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy" in attached, True,
           "moto's CloudFormation Role ignores ManagedPolicyArns")


def check_logs_kms(client, ck: Checks, phys, params) -> None:
    print("\nLogs and KMS:")
    logs = client("logs")
    key_arn = f"arn:aws:kms:{REGION}:123456789012:key/{phys['StackKey']}"
    for lg in ("FlowLogGroup", "RestAccessLogs", "WebSocketAccessLogs", "FilesLogs", "StateLogs", "MaintenanceLogs"):
        groups = [g for g in logs.describe_log_groups(logGroupNamePrefix=phys[lg])["logGroups"] if g["logGroupName"] == phys[lg]]
        ck.live(f"{lg}: exists, retention {params['LogRetentionDays']} days", [g.get("retentionInDays") for g in groups], [params["LogRetentionDays"]])
        ck.gap(f"{lg}: encrypted with StackKey", [g.get("kmsKeyId") for g in groups], [key_arn],
               "moto's LogGroup reads kmsKeyId, CloudFormation's KmsKeyId is ignored")
    kms = client("kms")
    key = ck.call("StackKey exists", lambda: kms.describe_key(KeyId=phys["StackKey"])["KeyMetadata"])
    if key:
        ck.live("StackKey enabled", (key.get("Enabled"), key.get("KeyState")), (True, "Enabled"))
        ck.live("StackKey rotation on", kms.get_key_rotation_status(KeyId=phys["StackKey"]).get("KeyRotationEnabled"), True)
        policy = json.loads(kms.get_key_policy(KeyId=phys["StackKey"], PolicyName="default")["Policy"])
        ck.live("StackKey policy statements (stored, not evaluated)", sorted(s.get("Sid") for s in policy["Statement"]),
                ["AccountAdministers", "LogsEncrypt"])


def check_rest_api(client, ck: Checks, phys) -> None:
    print("\nREST API (AWS::ApiGateway::RestApi, Resource, Method, Deployment are in moto's map):")
    ag = client("apigateway")
    api = ck.call("RestApi exists", lambda: ag.get_rest_api(restApiId=phys["RestApi"]))
    if api is None:
        return
    items = ag.get_resources(restApiId=phys["RestApi"], embed=["methods"])["items"]
    paths = {i["path"]: i for i in items}
    ck.live("resources /, /v1, /v1/config, /v1/{proxy+}", sorted(paths), ["/", "/v1", "/v1/config", "/v1/{proxy+}"])
    ck.live("resource ids are the stack's", (paths.get("/v1", {}).get("id"), paths.get("/v1/config", {}).get("id"), paths.get("/v1/{proxy+}", {}).get("id")),
            (phys["RestV1"], phys["RestV1Config"], phys["RestV1Proxy"]))
    cfg = _or_none(lambda: ag.get_method(restApiId=phys["RestApi"], resourceId=phys["RestV1Config"], httpMethod="GET")) or {}
    anym = _or_none(lambda: ag.get_method(restApiId=phys["RestApi"], resourceId=phys["RestV1Proxy"], httpMethod="ANY")) or {}
    ck.live("GET /v1/config: no authorization", cfg.get("authorizationType"), "NONE")
    ck.live("ANY /v1/{proxy+}: Cognito user pools", anym.get("authorizationType"), "COGNITO_USER_POOLS")
    lb_dns = client("elbv2").describe_load_balancers(LoadBalancerArns=[phys["LoadBalancer"]])["LoadBalancers"][0]["DNSName"]
    ck.live("GET /v1/config → HTTP_PROXY to the NLB :8787",
            (cfg.get("methodIntegration", {}).get("type"), cfg.get("methodIntegration", {}).get("uri")),
            ("HTTP_PROXY", f"http://{lb_dns}:8787/v1/config"))
    ck.live("ANY /v1/{proxy+} → HTTP_PROXY to the NLB :8787",
            (anym.get("methodIntegration", {}).get("type"), anym.get("methodIntegration", {}).get("uri")),
            ("HTTP_PROXY", f"http://{lb_dns}:8787/v1/{{proxy}}"))
    ck.live("a deployment exists", len(ag.get_deployments(restApiId=phys["RestApi"])["items"]), 1)
    why = "not read by moto's CloudFormation"
    ck.gap("binary media types */*", api.get("binaryMediaTypes"), ["*/*"], "moto's CloudFormation RestApi ignores BinaryMediaTypes")
    ck.gap("endpoint REGIONAL", api.get("endpointConfiguration", {}).get("types"), ["REGIONAL"], why + " as given")
    ck.gap("integrations through the VPC link", cfg.get("methodIntegration", {}).get("connectionType"), "VPC_LINK",
           "moto's CloudFormation Method drops ConnectionType (and the VPC link is not modelled)")


# ---------------------------------------------------------------------------- self-test

def mutate(template: dict) -> tuple[dict, set[str]]:
    """A template with supported resources made wrong in ways moto carries through, and the
    live checks that must catch them."""
    t = copy.deepcopy(template)
    r = t["Resources"]
    del r["BlobBucket"]["Properties"]["BucketEncryption"]
    r["Database"]["Properties"]["StorageEncrypted"] = False
    r["StateTargetGroup"]["Properties"]["HealthCheckPath"] = "/"
    r["FilesTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["ReadonlyRootFilesystem"] = False
    stmt = r["StateTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
    stmt["Action"] = "execute-api:*"
    env = r["StateTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]
    r["StateTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"] = [
        e for e in env if e.get("Name") != "SYNCSPHERE_ROLE"]
    return t, {
        "bucket encryption",
        "default encryption AES256",
        "StorageEncrypted",
        "StateTargetGroup: health check HTTP /healthz",
        "FilesTaskDefinition: readonlyRootFilesystem",
        "StateTaskRole: execute-api:ManageConnections only",
        "StateTaskDefinition: SYNCSPHERE_ROLE=state",
        "StateTaskDefinition: the template's environment names",
        "route table associations deployed (6) are visible",
    }


def self_test(client, original: dict, classes: dict, timeout: float) -> int:
    import contextlib
    import io

    bad, expected = mutate(original)
    # The silent types are kept here: their check must fail too.
    subset = smoke_subset(bad, classes, {"ImageUri": IMAGE_URI}, quiet=True, keep_silent=True)
    stack = f"syncsphere-smoke-selftest-{uuid.uuid4().hex[:8]}"
    status, outputs = deploy(client, stack, subset, timeout)
    if status != "CREATE_COMPLETE":
        print(f"self-test: the mutated stack did not deploy ({status})")
        return 1
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        # the checks compare with the unmutated template's intent
        ck = run_checks(client, stack, subset, original, outputs, classes)
    delete_stack(client, stack)
    failed = set(ck.failed)
    print("self-test: mutated template (bucket encryption removed, DB unencrypted, health check path '/', "
          "writable root filesystem, execute-api:*, SYNCSPHERE_ROLE removed from the state task) deployed with "
          f"the silent types kept ({', '.join(SILENT_TYPES)})")
    for name in sorted(expected):
        print(f"  {'caught' if name in failed else 'MISSED'}  {name}")
    for name in sorted(failed - expected):
        print(f"  UNEXPECTED failure  {name}")
    if failed != expected:
        print("self-test FAILED: the checks did not report exactly the mutations")
        print(buf.getvalue())
        return 1
    print(f"self-test passed: the mutations failed exactly the {len(expected)} checks expected, {len(ck.passed)} others passed")
    return 0


# ---------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", required=True, help="moto server URL")
    ap.add_argument("--self-test", action="store_true", help="prove the checks catch a mutated template")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for the stack")
    ap.add_argument("template")
    args = ap.parse_args()
    started = time.monotonic()

    original, loader = load_template(args.template)
    print(f"{args.template}: loaded with {loader}'s YAML loader")
    classes = moto_model_map()
    client = clients(args.endpoint)
    if args.self_test:
        rc = self_test(client, original, classes, args.timeout)
        print(f"self-test took {time.monotonic() - started:.1f} s")
        return rc

    print_model_map(classes)
    subset = smoke_subset(original, classes, {"ImageUri": IMAGE_URI})
    print("top-level properties of the kept resources that moto's create_from_cloudformation_json "
          "never names (read from moto's source now; they are not deployed, whatever the template says):")
    for t, props in sorted(moto_ignored_properties(subset, classes).items()):
        if props:
            print(f"  {t}: {', '.join(props)}")
    print()
    dropped_types = sorted({r["Type"] for r in original["Resources"].values()} - {r["Type"] for r in subset["Resources"].values()})
    probe_dropped_types(client, [t for t in dropped_types if t not in classes], args.timeout)

    stack = f"syncsphere-smoke-{uuid.uuid4().hex[:8]}"
    status, outputs = deploy(client, stack, subset, args.timeout)
    print(f"stack {stack}: {status} after {time.monotonic() - started:.1f} s")
    if status != "CREATE_COMPLETE":
        return 1
    ck = run_checks(client, stack, subset, original, outputs, classes)
    delete_stack(client, stack)
    print(f"\n{len(ck.passed)} checks passed, {len(ck.failed)} failed; {len(ck.gaps)} properties moto does not "
          f"model were not checkable (listed as 'gap' above); {time.monotonic() - started:.1f} s")
    if ck.failed:
        print("FAILED: " + "; ".join(ck.failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
