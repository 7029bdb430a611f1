#!/usr/bin/env python3
"""The project's own check of deploy/syncsphere.yaml: what cfn-lint and checkov do not know.

Run with cfn-lint's Python (scripts/check-deploy.sh does; its loader turns `!Ref`-style tags
into the long JSON form):

    check-template.py deploy/syncsphere.yaml     # findings, exit 1 if any
    check-template.py --self-test deploy/syncsphere.yaml

Rules (issue 18, decision 0044):
- WebSocket APIs: authorizers are REQUEST only and routes use NONE, AWS_IAM or CUSTOM (no JWT,
  no Cognito authorizer: WebSocket APIs have none); every VPC_LINK integration names an
  `AWS::ApiGateway::VpcLink` (V1, the only kind WebSocket APIs take) whose target is a
  network load balancer; every integration maps `context.connectionId` to the header the
  state service reads and sends the shared secret from Secrets Manager; `$connect` maps the
  handshake's Authorization header; the three routes reach the service's three paths (read
  from server/state/src/apigw.rs, so a renamed path in the code fails here).
- The state task's role may `execute-api:ManageConnections` on this WebSocket API, and the task
  pushes through that same API; it publishes its connections to CloudWatch, may do so in that
  namespace only, and a scaling policy tracks exactly that metric (namespace, dimensions,
  `Average`).
- Secrets: every secret a container gets comes from a Secrets Manager secret of this template
  (ECS `Secrets`), the execution role may read each of them, no secret-looking variable is set
  in plain `Environment`, no URL in the environment carries a password, the database password
  and the Redis AUTH token are Secrets Manager references, and no parameter carries a secret.
- Every variable a container gets is one the server documents (README's server table, which
  a test keeps equal to `--help`) or a standard one it reads: a typo would be ignored
  silently by the server and found only on AWS.

`--self-test` applies mutations that each break one rule and fails unless every one is
reported and the template itself has no finding.
"""

import copy
import json
import re
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
APIGW_RS = ROOT / "server/state/src/apigw.rs"
README = ROOT / "README.md"

# Variables the server reads that are not its own flags (README names them in prose).
STANDARD_ENV = {
    "AWS_REGION",  # the AWS SDK's region (S3, @connections)
    "RUST_LOG",  # tracing filter
    "PGPASSWORD",  # sqlx: the database password when DATABASE_URL has none
    "SSL_CERT_FILE",  # rustls-native-certs: extra trust roots
}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|PRIVATE_KEY|ACCESS_KEY)(?!_FILE)", re.I)
SECRET_PARAMETER = re.compile(r"(Password|Secret|Token|Key)$")
URL_WITH_PASSWORD = re.compile(r"://[^/@\s:]*:[^/@\s]+@")
DYNAMIC_SECRET = re.compile(r"^\{\{resolve:secretsmanager:\$\{(\w+)\}:")


def rust_const(name):
    text = APIGW_RS.read_text()
    m = re.search(rf'pub const {name}: &str = "([^"]+)";', text)
    if not m:
        raise SystemExit(f"{APIGW_RS}: constant {name} not found")
    return m.group(1)


def documented_env():
    """Environment variable names in README's server configuration table (its env column)."""
    names = set()
    in_table = False
    for line in README.read_text().splitlines():
        if line.startswith("| flag | env |"):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cells = line.split("|")
            if len(cells) > 2:
                names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[2]))
    if not names:
        raise SystemExit(f"{README}: the server configuration table was not found")
    return names


def load(path):
    template, matches = decode(str(path))
    if template is None:
        raise SystemExit(f"{path}: cannot be read: {matches}")
    return template


def refs_in(value):
    """Logical names a value refers to (Ref, GetAtt, ${Name} in Sub)."""
    out = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                out.add(inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                out.add(target)
            elif key == "Fn::Sub":
                text = inner[0] if isinstance(inner, list) else inner
                out.update(n.split(".")[0] for n in re.findall(r"\$\{([\w.]+)\}", str(text)))
                if isinstance(inner, list) and len(inner) > 1:
                    out |= refs_in(inner[1])
            else:
                out |= refs_in(inner)
    elif isinstance(value, list):
        for inner in value:
            out |= refs_in(inner)
    return out


def sub_text(value):
    """The text of a plain string or an Fn::Sub, else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        inner = value["Fn::Sub"]
        return inner[0] if isinstance(inner, list) else inner
    return None


def ref_target(value):
    if isinstance(value, dict) and "Ref" in value:
        return value["Ref"]
    return None


def flatten_if(items):
    """List items of a property, with Fn::If branches (both) in place of the conditional."""
    for item in items or []:
        if isinstance(item, dict) and "Fn::If" in item:
            for branch in item["Fn::If"][1:]:
                if isinstance(branch, dict) and "Ref" in branch and branch["Ref"] == "AWS::NoValue":
                    continue
                yield from flatten_if([branch])
        else:
            yield item


def statements(policy_doc):
    stmts = policy_doc.get("Statement", [])
    return stmts if isinstance(stmts, list) else [stmts]


def as_list(value):
    return value if isinstance(value, list) else [value]


def check(template):
    findings = []
    resources = template.get("Resources", {})

    def typ(name):
        return resources.get(name, {}).get("Type")

    def props(name):
        return resources.get(name, {}).get("Properties", {}) or {}

    def of_type(kind):
        return {n: r.get("Properties", {}) or {} for n, r in resources.items() if r.get("Type") == kind}

    secrets = set(of_type("AWS::SecretsManager::Secret"))
    websocket_apis = {
        n for n, p in of_type("AWS::ApiGatewayV2::Api").items() if p.get("ProtocolType") == "WEBSOCKET"
    }
    if not websocket_apis:
        findings.append("no WebSocket API (AWS::ApiGatewayV2::Api, ProtocolType WEBSOCKET)")

    # ---- WebSocket authorizers and routes
    for name, p in of_type("AWS::ApiGatewayV2::Authorizer").items():
        if ref_target(p.get("ApiId")) in websocket_apis and p.get("AuthorizerType") != "REQUEST":
            findings.append(
                f"{name}: a WebSocket API's authorizer must be REQUEST (or use AWS_IAM on the route), "
                f"not {p.get('AuthorizerType')}"
            )
    routes = {
        n: p for n, p in of_type("AWS::ApiGatewayV2::Route").items() if ref_target(p.get("ApiId")) in websocket_apis
    }
    for name, p in routes.items():
        kind = p.get("AuthorizationType", "NONE")
        if kind not in ("NONE", "AWS_IAM", "CUSTOM"):
            findings.append(f"{name}: WebSocket routes take NONE, AWS_IAM or CUSTOM authorization, not {kind}")

    # ---- WebSocket integrations
    paths = {
        "$connect": rust_const("CONNECT_PATH"),
        "$default": rust_const("MESSAGE_PATH"),
        "$disconnect": rust_const("DISCONNECT_PATH"),
    }
    secret_header = rust_const("SECRET_HEADER").lower()
    connection_header = rust_const("CONNECTION_ID_HEADER").lower()
    integrations = {
        n: p
        for n, p in of_type("AWS::ApiGatewayV2::Integration").items()
        if ref_target(p.get("ApiId")) in websocket_apis
    }
    for name, p in integrations.items():
        if p.get("ConnectionType") == "VPC_LINK":
            link = ref_target(p.get("ConnectionId"))
            if typ(link) != "AWS::ApiGateway::VpcLink":
                findings.append(
                    f"{name}: a WebSocket VPC_LINK integration needs an AWS::ApiGateway::VpcLink "
                    f"(REST API link, NLB only), not {typ(link) or p.get('ConnectionId')}"
                )
            else:
                for target in as_list(props(link).get("TargetArns", [])):
                    lb = ref_target(target)
                    if typ(lb) != "AWS::ElasticLoadBalancingV2::LoadBalancer" or props(lb).get("Type") != "network":
                        findings.append(f"{link}: a VPC link targets network load balancers only ({target})")
        params = {k.lower(): v for k, v in (p.get("RequestParameters") or {}).items()}
        if params.get(f"integration.request.header.{connection_header}") != "context.connectionId":
            findings.append(f"{name}: must map context.connectionId to the {connection_header} header")
        secret = sub_text(params.get(f"integration.request.header.{secret_header}"))
        m = re.match(r"^'(.*)'$", secret or "")
        target = DYNAMIC_SECRET.match(m.group(1)) if m else None
        if not target or target.group(1) not in secrets:
            findings.append(
                f"{name}: must send {secret_header} as a static value from a Secrets Manager secret of "
                "this template ('{{resolve:secretsmanager:${Secret}:…}}')"
            )
    for route_key, path in paths.items():
        found = [(n, p) for n, p in routes.items() if p.get("RouteKey") == route_key]
        if not found:
            findings.append(f"no {route_key} route on the WebSocket API")
            continue
        for name, p in found:
            target = sub_text(p.get("Target")) or ""
            m = re.fullmatch(r"integrations/\$\{(\w+)\}", target)
            integration = m.group(1) if m else None
            if integration not in integrations:
                findings.append(f"{name}: must target one of the API's integrations, not {target!r}")
                continue
            uri = sub_text(integrations[integration].get("IntegrationUri")) or ""
            if not re.search(rf":\d+{re.escape(path)}$", uri):
                findings.append(f"{integration}: {route_key} must reach the service's {path} (is {uri!r})")
            params = {k.lower(): v for k, v in (integrations[integration].get("RequestParameters") or {}).items()}
            if route_key == "$connect" and (
                params.get("integration.request.header.authorization") != "route.request.header.Authorization"
            ):
                findings.append(
                    f"{integration}: $connect must map route.request.header.Authorization "
                    "(the service is the authorizer, decision 0042)"
                )

    # ---- task definitions: who pushes, what they get
    readable = set()
    executions = set()
    for name, p in of_type("AWS::ECS::TaskDefinition").items():
        executions |= refs_in(p.get("ExecutionRoleArn"))
    for role in executions:
        for policy in props(role).get("Policies", []):
            for st in statements(policy.get("PolicyDocument", {})):
                if "secretsmanager:GetSecretValue" in as_list(st.get("Action")) and st.get("Effect") == "Allow":
                    readable |= refs_in(st.get("Resource"))

    documented = documented_env() | STANDARD_ENV
    state_tasks = []
    for name, p in of_type("AWS::ECS::TaskDefinition").items():
        for container in p.get("ContainerDefinitions", []):
            env = {}
            for item in flatten_if(container.get("Environment")):
                env[item.get("Name")] = item.get("Value")
            for var, value in env.items():
                if var not in documented:
                    findings.append(f"{name}: {var} is not a variable the server reads (README's server table)")
                if SECRET_NAME.search(var or ""):
                    findings.append(f"{name}: {var} looks secret and must come from Secrets (Secrets Manager)")
                text = sub_text(value)
                if text and URL_WITH_PASSWORD.search(text):
                    findings.append(f"{name}: {var} carries a password in a URL; pass it as a secret")
            for item in flatten_if(container.get("Secrets")):
                var = item.get("Name")
                if var not in documented:
                    findings.append(f"{name}: {var} is not a variable the server reads (README's server table)")
                sources = refs_in(item.get("ValueFrom"))
                from_secret = [s for s in sources if s in secrets]
                if not from_secret:
                    findings.append(f"{name}: secret {var} must come from a Secrets Manager secret of this template")
                for s in from_secret:
                    if s not in readable:
                        findings.append(f"{name}: the execution role cannot read {s} (secret {var})")
            if env.get("SYNCSPHERE_ROLE") == "state":
                state_tasks.append((name, p, env))
    if not state_tasks:
        findings.append("no task definition runs the state role")
    for name, p, env in state_tasks:
        endpoint_apis = refs_in(env.get("SYNCSPHERE_APIGW_ENDPOINT")) & websocket_apis
        if not endpoint_apis:
            findings.append(f"{name}: SYNCSPHERE_APIGW_ENDPOINT must be this template's WebSocket API")
        roles = refs_in(p.get("TaskRoleArn"))
        may_manage = set()
        for role in roles:
            for policy in props(role).get("Policies", []):
                for st in statements(policy.get("PolicyDocument", {})):
                    actions = as_list(st.get("Action"))
                    if st.get("Effect") == "Allow" and (
                        "execute-api:ManageConnections" in actions or "execute-api:*" in actions
                    ):
                        for resource in as_list(st.get("Resource")):
                            text = sub_text(resource) or ""
                            if "@connections" in text:
                                may_manage |= refs_in(resource) & websocket_apis
        if not endpoint_apis or not endpoint_apis <= may_manage:
            findings.append(
                f"{name}: its task role must allow execute-api:ManageConnections on the @connections "
                "of the WebSocket API it pushes through"
            )

    # ---- the connections metric: published by the state tasks, allowed, and what scaling tracks
    policies = of_type("AWS::ApplicationAutoScaling::ScalingPolicy")
    for name, p, env in state_tasks:
        namespace = env.get("SYNCSPHERE_CLOUDWATCH_NAMESPACE")
        if namespace is None:
            findings.append(f"{name}: the state tasks must publish their connections (SYNCSPHERE_CLOUDWATCH_NAMESPACE)")
            continue
        dims = sorted((sub_text(env.get("SYNCSPHERE_CLOUDWATCH_DIMENSIONS")) or "").split(","))
        allowed = False
        for role in refs_in(p.get("TaskRoleArn")):
            for policy in props(role).get("Policies", []):
                for st in statements(policy.get("PolicyDocument", {})):
                    cond = (st.get("Condition") or {}).get("StringEquals", {})
                    if (
                        st.get("Effect") == "Allow"
                        and "cloudwatch:PutMetricData" in as_list(st.get("Action"))
                        and cond.get("cloudwatch:namespace") == namespace
                    ):
                        allowed = True
        if not allowed:
            findings.append(
                f"{name}: its task role must allow cloudwatch:PutMetricData for namespace {namespace!r} only"
            )
        tracked = False
        for pname, pp in policies.items():
            spec = (pp.get("TargetTrackingScalingPolicyConfiguration") or {}).get("CustomizedMetricSpecification")
            if not spec or spec.get("MetricName") != "Connections":
                continue
            spec_dims = sorted(
                f"{d.get('Name')}={sub_text(d.get('Value'))}" for d in spec.get("Dimensions", [])
            )
            if spec.get("Namespace") != namespace or spec_dims != dims or spec.get("Statistic") != "Average":
                findings.append(
                    f"{pname}: tracks Connections in {spec.get('Namespace')!r} {spec_dims}, but the state "
                    f"tasks publish in {namespace!r} {dims} (Average over tasks is connections per task)"
                )
            else:
                tracked = True
        if not tracked:
            findings.append(f"{name}: no scaling policy tracks the Connections the state tasks publish")

    # ---- secrets of the data stores, parameters
    for name, p in of_type("AWS::RDS::DBInstance").items():
        for key in ("MasterUserPassword",):
            m = DYNAMIC_SECRET.match(sub_text(p.get(key)) or "")
            if p.get(key) is not None and not (m and m.group(1) in secrets):
                findings.append(f"{name}: {key} must be a Secrets Manager reference to a secret of this template")
    for name, p in of_type("AWS::ElastiCache::ReplicationGroup").items():
        if not p.get("TransitEncryptionEnabled"):
            findings.append(f"{name}: Redis without TLS (the server speaks rediss://)")
        m = DYNAMIC_SECRET.match(sub_text(p.get("AuthToken")) or "")
        if not (m and m.group(1) in secrets):
            findings.append(f"{name}: AuthToken must be a Secrets Manager reference to a secret of this template")
    for name, p in (template.get("Parameters") or {}).items():
        if p.get("NoEcho") or SECRET_PARAMETER.search(name):
            findings.append(f"parameter {name}: secrets are made in Secrets Manager, not passed as parameters")
    return findings


# ------------------------------------------------------------------------- self-test
def first(template, kind, **match):
    for name, r in template["Resources"].items():
        if r.get("Type") == kind and all(r.get("Properties", {}).get(k) == v for k, v in match.items()):
            return name, r["Properties"]
    raise SystemExit(f"self-test: no {kind} {match} in the template")


def container(template, role):
    for r in template["Resources"].values():
        if r.get("Type") == "AWS::ECS::TaskDefinition":
            c = r["Properties"]["ContainerDefinitions"][0]
            if any(e.get("Name") == "SYNCSPHERE_ROLE" and e.get("Value") == role for e in flatten_if(c["Environment"])):
                return c
    raise SystemExit(f"self-test: no task definition for {role}")


def m_jwt_authorizer(t):
    api, _ = first(t, "AWS::ApiGatewayV2::Api", ProtocolType="WEBSOCKET")
    t["Resources"]["JwtAuthorizer"] = {
        "Type": "AWS::ApiGatewayV2::Authorizer",
        "Properties": {"ApiId": {"Ref": api}, "AuthorizerType": "JWT", "Name": "jwt"},
    }


def m_jwt_route(t):
    _, p = first(t, "AWS::ApiGatewayV2::Route", RouteKey="$connect")
    p["AuthorizationType"] = "JWT"


def m_v2_vpc_link(t):
    t["Resources"]["LinkV2"] = {"Type": "AWS::ApiGatewayV2::VpcLink", "Properties": {"Name": "v2", "SubnetIds": []}}
    _, p = first(t, "AWS::ApiGatewayV2::Integration", IntegrationType="HTTP_PROXY")
    p["ConnectionId"] = {"Ref": "LinkV2"}


def m_no_connection_id(t):
    for r in t["Resources"].values():
        if r.get("Type") == "AWS::ApiGatewayV2::Integration" and "default" in json.dumps(r["Properties"]["IntegrationUri"]):
            del r["Properties"]["RequestParameters"]["integration.request.header.connectionid"]
            return
    raise SystemExit("self-test: no $default integration")


def m_literal_gateway_secret(t):
    _, p = first(t, "AWS::ApiGatewayV2::Integration", IntegrationType="HTTP_PROXY")
    p["RequestParameters"]["integration.request.header.x-syncsphere-gateway-secret"] = "'not-from-secrets-manager'"


def m_no_authorization(t):
    for r in t["Resources"].values():
        if r.get("Type") == "AWS::ApiGatewayV2::Integration" and "connect" in json.dumps(r["Properties"]["IntegrationUri"]).split("/")[-1]:
            r["Properties"]["RequestParameters"].pop("integration.request.header.Authorization")
            return
    raise SystemExit("self-test: no $connect integration")


def m_wrong_path(t):
    for r in t["Resources"].values():
        if r.get("Type") == "AWS::ApiGatewayV2::Integration":
            uri = r["Properties"]["IntegrationUri"]
            uri["Fn::Sub"] = uri["Fn::Sub"].replace("/v1/apigw/disconnect", "/v1/apigw/disconnected")


def m_no_manage_connections(t):
    for r in t["Resources"].values():
        if r.get("Type") == "AWS::IAM::Role":
            for policy in r["Properties"].get("Policies", []):
                for st in statements(policy["PolicyDocument"]):
                    if st.get("Action") == "execute-api:ManageConnections":
                        st["Action"] = "execute-api:Invoke"


def m_password_in_environment(t):
    c = container(t, "files")
    c["Secrets"] = [s for s in c["Secrets"] if s["Name"] != "PGPASSWORD"]
    c["Environment"].append({"Name": "PGPASSWORD", "Value": "hunter2hunter2"})


def m_password_in_url(t):
    c = container(t, "files")
    for e in c["Environment"]:
        if e.get("Name") == "REDIS_URL":
            e["Value"] = {"Fn::Sub": "rediss://:hunter2@${Cache.PrimaryEndPoint.Address}:6379"}


def m_literal_auth_token(t):
    _, p = first(t, "AWS::ElastiCache::ReplicationGroup")
    p["AuthToken"] = "a-literal-token-in-the-template"


def m_secret_parameter(t):
    t["Parameters"]["DbPassword"] = {"Type": "String", "NoEcho": True}


def m_typo_variable(t):
    c = container(t, "state")
    for e in c["Environment"]:
        if e.get("Name") == "SYNCSPHERE_COGNITO_CLIENT_IDS":
            e["Name"] = "SYNCSPHERE_COGNITO_CLIENT_ID"


def m_foreign_secret(t):
    c = container(t, "state")
    for s in c["Secrets"]:
        if s["Name"] == "SYNCSPHERE_APIGW_SECRET":
            s["ValueFrom"] = "arn:aws:secretsmanager:us-east-1:123456789012:secret:elsewhere"


def m_unreadable_secret(t):
    for r in t["Resources"].values():
        if r.get("Type") == "AWS::IAM::Role":
            for policy in r["Properties"].get("Policies", []):
                for st in statements(policy["PolicyDocument"]):
                    if st.get("Action") == "secretsmanager:GetSecretValue":
                        st["Resource"] = [x for x in st["Resource"] if x != {"Ref": "GatewaySecret"}]


def m_metric_dimension_mismatch(t):
    c = container(t, "state")
    for e in c["Environment"]:
        if e.get("Name") == "SYNCSPHERE_CLOUDWATCH_DIMENSIONS":
            e["Value"] = {"Fn::Sub": "Service=${AWS::StackName}-push"}


def m_no_put_metric_data(t):
    for r in t["Resources"].values():
        if r.get("Type") == "AWS::IAM::Role":
            for policy in r["Properties"].get("Policies", []):
                doc = policy["PolicyDocument"]
                doc["Statement"] = [st for st in statements(doc) if st.get("Action") != "cloudwatch:PutMetricData"]


MUTATIONS = [
    m_metric_dimension_mismatch,
    m_no_put_metric_data,
    m_jwt_authorizer,
    m_jwt_route,
    m_v2_vpc_link,
    m_no_connection_id,
    m_literal_gateway_secret,
    m_no_authorization,
    m_wrong_path,
    m_no_manage_connections,
    m_password_in_environment,
    m_password_in_url,
    m_literal_auth_token,
    m_secret_parameter,
    m_typo_variable,
    m_foreign_secret,
    m_unreadable_secret,
]


def plain(value):
    """cfn-lint's node types as plain dicts/lists/strs (deep-copyable, editable)."""
    return json.loads(json.dumps(value))


def main(argv):
    self_test = "--self-test" in argv
    paths = [a for a in argv if not a.startswith("--")]
    if len(paths) != 1:
        raise SystemExit(__doc__)
    template = plain(load(paths[0]))
    findings = check(template)
    if not self_test:
        for f in findings:
            print(f"{paths[0]}: {f}")
        print(f"check-template: {len(findings)} finding(s)")
        return 1 if findings else 0
    failed = bool(findings)
    for f in findings:
        print(f"the template itself: {f}")
    for mutation in MUTATIONS:
        t = copy.deepcopy(template)
        mutation(t)
        got = [f for f in check(t) if f not in findings]
        name = mutation.__name__[2:]
        if got:
            print(f"caught {name}: {got[0]}")
        else:
            print(f"MISSED {name}: no finding")
            failed = True
    print(f"check-template self-test: {len(MUTATIONS)} mutations, {'FAILED' if failed else 'all caught'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
