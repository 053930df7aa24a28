"""Checks of the AIBackend CustomResourceDefinition (crds/), without a cluster.

What is checked here: the CRD is a well-formed ``apiextensions.k8s.io/v1`` object with a
structural schema; printer columns point at fields that exist; sample manifests (ours,
and agentgateway-style ones with only apiVersion/kind changed) pass or fail the
openAPIV3Schema as the API server would with strict field validation (kubectl's
default); and ``crds/generate.py`` still produces the committed YAML.

CEL (``x-kubernetes-validations``): only an API server runs Kubernetes CEL, with its
type checking and cost budget, so these tests cannot prove a rule is accepted there.
They check every rule is non-empty, has a message, and names only fields that exist at
that point of the schema. When ``cel-python`` is installed they also parse every rule
and evaluate it against the samples, which catches logic mistakes; otherwise those
tests skip.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "crds" / "llmgw.dev_aibackends.yaml"
GENERATOR_PATH = ROOT / "crds" / "generate.py"

Schema = dict[str, Any]

SCALAR_TYPES = {"string", "integer", "number", "boolean"}
PRINTER_COLUMN_TYPES = {"integer", "number", "string", "boolean", "date"}
OBJECT_META_FIELDS = {
    "name",
    "namespace",
    "uid",
    "generation",
    "labels",
    "annotations",
    "creationTimestamp",
    "deletionTimestamp",
    "resourceVersion",
}
CEL_METHODS = {
    "all",
    "exists",
    "exists_one",
    "filter",
    "map",
    "size",
    "startsWith",
    "endsWith",
    "contains",
    "matches",
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def crd() -> Schema:
    docs = [d for d in yaml.safe_load_all(CRD_PATH.read_text()) if d is not None]
    assert len(docs) == 1, "the file holds exactly one CRD"
    return docs[0]


@pytest.fixture(scope="module")
def version(crd: Schema) -> Schema:
    return crd["spec"]["versions"][0]


@pytest.fixture(scope="module")
def schema(version: Schema) -> Schema:
    return version["schema"]["openAPIV3Schema"]


def walk(node: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its path (``.spec.ai.groups[].providers[]``)."""
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")


def subtree_fields(node: Schema) -> set[str]:
    return {name for _, n in walk(node) for name in n.get("properties", {})}


# --------------------------------------------------------------------------- CRD shape


def test_generated_file_is_current() -> None:
    spec = importlib.util.spec_from_file_location("crds_generate", GENERATOR_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == CRD_PATH.read_text(), "run: python crds/generate.py"


def test_crd_names(crd: Schema) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    spec = crd["spec"]
    assert spec["group"] == "llmgw.dev"
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == "AIBackend"
    assert names["listKind"] == "AIBackendList"
    assert names["plural"] == "aibackends"
    assert names["singular"] == "aibackend"
    assert names["shortNames"] == ["aib"]
    assert names["categories"] == ["llmgw"]
    assert crd["metadata"]["name"] == f"{names['plural']}.{spec['group']}"


def test_versions_and_subresources(crd: Schema) -> None:
    versions = crd["spec"]["versions"]
    assert [v["name"] for v in versions] == ["v1alpha1"]
    assert sum(v["storage"] for v in versions) == 1
    (v,) = versions
    assert v["served"] is True and v["storage"] is True
    assert v["subresources"] == {"status": {}}
    assert set(v["schema"]) == {"openAPIV3Schema"}


def resolve_jsonpath(schema: Schema, path: str) -> list[Schema]:
    """Schema nodes a printer-column JSONPath can reach (dots, ``..``, ``[?(@.f=="v")]``)."""
    token = re.compile(r"\.\.([A-Za-z_]\w*)|\.([A-Za-z_]\w*)|\[\?\(@\.(\w+)==([\"'])\w+\4\)\]")
    nodes = [schema]
    pos = 0
    while pos < len(path):
        m = token.match(path, pos)
        assert m, f"unsupported JSONPath syntax at {path[pos:]!r} in {path!r}"
        recursive, field, filter_field = m.group(1), m.group(2), m.group(3)
        found: list[Schema] = []
        for node in nodes:
            if recursive:
                found += [n["properties"][recursive] for _, n in walk(node) if recursive in n.get("properties", {})]
            elif field:
                if field in node.get("properties", {}):
                    found.append(node["properties"][field])
            else:
                assert node.get("type") == "array", f"filter on a non-list in {path!r}"
                items = node["items"]
                assert filter_field in items.get("properties", {}), path
                found.append(items)
        assert found, f"{path!r}: nothing matches at {path[pos:]!r}"
        nodes = found
        pos = m.end()
    return nodes


def test_printer_columns(version: Schema, schema: Schema) -> None:
    columns = version["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == ["Model", "Host", "Accepted", "Programmed", "Age"]
    assert len({c["name"] for c in columns}) == len(columns)
    for column in columns:
        assert column["type"] in PRINTER_COLUMN_TYPES
        path = column["jsonPath"]
        assert path.startswith("."), "the API server requires a leading dot"
        if path.startswith(".metadata."):
            assert path.removeprefix(".metadata.") in OBJECT_META_FIELDS
            continue
        for node in resolve_jsonpath(schema, path):
            assert node["type"] in SCALAR_TYPES, f"{column['name']} ends on a {node['type']}"
    by_name = {c["name"]: c for c in columns}
    assert by_name["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }
    assert by_name["Accepted"]["jsonPath"] == '.status.conditions[?(@.type=="Accepted")].status'
    assert by_name["Programmed"]["jsonPath"] == '.status.conditions[?(@.type=="Programmed")].status'


def test_schema_is_structural(schema: Schema) -> None:
    """The rules of a structural schema, plus what the CEL cost estimator needs."""
    assert schema["type"] == "object"
    assert schema["properties"]["metadata"] == {"type": "object"}
    for path, node in walk(schema):
        where = path or "<root>"
        if node.get("x-kubernetes-preserve-unknown-fields") is True and "type" not in node:
            # Any JSON value (agentgateway's apiextensionsv1.JSON: defaults/overrides `value`): no more rules.
            assert node.get("description") and set(node) == {"description", "x-kubernetes-preserve-unknown-fields"}
            continue
        assert node.get("type") in SCALAR_TYPES | {"object", "array"}, where
        assert "$ref" not in node and "anyOf" not in node and "oneOf" not in node, where
        assert "x-kubernetes-preserve-unknown-fields" not in node, where
        assert "x-kubernetes-int-or-string" not in node, where
        if path not in ("", ".metadata"):
            assert node.get("description"), f"{where} has no description"
        if node["type"] == "object":
            # A map (Kubernetes allows it): a value schema, never beside `properties`, bounded for CEL.
            extra = node.get("additionalProperties")
            assert extra is None or (isinstance(extra, dict) and "properties" not in node), where
            assert extra is None or "maxProperties" in node, f"{where}: CEL cost needs maxProperties"
            assert set(node.get("required", [])) <= set(node.get("properties", {})), where
        else:
            assert "properties" not in node and "required" not in node, where
        if node["type"] == "array":
            assert "items" in node, where
            assert "maxItems" in node, f"{where}: CEL cost needs maxItems"
        if node["type"] == "string" and path.startswith(".spec"):
            assert "maxLength" in node or "enum" in node, f"{where}: CEL cost needs maxLength"
        if node["type"] == "integer":
            assert node.get("format") in ("int32", "int64"), where
        if "pattern" in node:
            assert node["pattern"].startswith("^") and node["pattern"].endswith(("$", "/")), where
            re.compile(node["pattern"])
        for value in node.get("enum", []):
            assert isinstance(value, str) and node["type"] == "string", where
        if "default" in node:
            default = node["default"]
            if node["type"] in ("boolean", "integer"):  # promptCaching's flags and counts
                assert type(default) is {"boolean": bool, "integer": int}[node["type"]], where
                continue
            assert node["type"] == "string" and isinstance(default, str), where
            assert default in node.get("enum", [default]), where
            assert re.search(node.get("pattern", ""), default), where
            assert node.get("minLength", 0) <= len(default) <= node.get("maxLength", 1 << 20), where
        if node.get("x-kubernetes-list-type") == "map":
            items = node["items"]
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in items.get("required", []) or "default" in items["properties"][key]


def test_status_conditions(schema: Schema) -> None:
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    props = item["properties"]
    assert set(props) == {
        "type",
        "status",
        "observedGeneration",
        "lastTransitionTime",
        "reason",
        "message",
    }
    assert props["status"]["enum"] == ["True", "False", "Unknown"]
    assert props["lastTransitionTime"]["format"] == "date-time"
    assert props["observedGeneration"]["format"] == "int64"
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}


def all_rules(schema: Schema) -> list[tuple[str, Schema, Schema]]:
    return [(path, node, rule) for path, node in walk(schema) for rule in node.get("x-kubernetes-validations", [])]


def test_validation_rules_name_existing_fields(schema: Schema) -> None:
    """CEL rules cannot run without an API server; here we check what can be checked."""
    rules = all_rules(schema)
    assert len(rules) >= 10
    for path, node, rule in rules:
        text = rule["rule"]
        assert text.strip(), path
        assert rule.get("message", "").strip(), path
        assert set(rule) <= {"rule", "message"}, path
        code = re.sub(r"'[^']*'|\"[^\"]*\"", "''", text)  # drop string literals
        fields = subtree_fields(node)
        if node["type"] == "object":
            for name in re.findall(r"\bself\.([A-Za-z_]\w*)\b(?!\s*\()", code):
                assert name in node.get("properties", {}), f"{path}: {text!r} names {name!r}"
        for name in re.findall(r"\.([A-Za-z_]\w*)\b(?!\s*\()", code):
            assert name in fields, f"{path}: {text!r} names {name!r}, not in the schema here"
        for method in re.findall(r"\.([A-Za-z_]\w*)\s*\(", code):
            assert method in CEL_METHODS, f"{path}: {text!r} calls {method!r}"


def test_expected_rules_are_present(schema: Schema) -> None:
    by_path: dict[str, list[str]] = {}
    for path, _, rule in all_rules(schema):
        by_path.setdefault(path, []).append(rule["message"])
    assert "exactly one of provider or groups must be set" in by_path[".spec.ai"]
    for where in (".spec.ai.provider", ".spec.ai.groups[].providers[]"):
        assert any(m.startswith("exactly one of openai,") for m in by_path[where])
    assert by_path[".spec.ai.groups"] == ["provider names must be unique across all groups"]
    for where in (".spec.policies.auth", ".spec.ai.provider.policies.auth"):
        assert any(m.startswith("exactly one of key, secretRef") for m in by_path[where])


# --------------------------------------------------------------------------- validation


def to_json_schema(node: Schema) -> Schema:
    """openAPIV3Schema → JSON Schema, with unknown fields rejected (strict field validation)."""
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes-") and k not in ("properties", "items")}
    if "properties" in node:
        out["properties"] = {name: to_json_schema(sub) for name, sub in node["properties"].items()}
    if "items" in node:
        out["items"] = to_json_schema(node["items"])
    if node.get("type") == "object" and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


@functools.cache
def cel_program(rule: str) -> Any:
    celpy = pytest.importorskip("celpy")
    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_errors(node: Schema, value: Any, path: str) -> list[str]:
    """Evaluate the rules on ``value`` and below, as the API server does after defaulting."""
    celpy = pytest.importorskip("celpy")
    errors = []
    for rule in node.get("x-kubernetes-validations", []):
        result = cel_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        if not isinstance(result, celpy.celtypes.BoolType):
            raise AssertionError(f"{path}: {rule['rule']!r} gave {result!r}")
        if not result:
            errors.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        for name, sub in node.get("properties", {}).items():
            if name in value:
                errors += cel_errors(sub, value[name], f"{path}.{name}")
    if isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            errors += cel_errors(node["items"], item, f"{path}[{i}]")
    return errors


def schema_errors(schema: Schema, manifest: Schema) -> list[str]:
    root = to_json_schema(schema)
    root["properties"]["metadata"] = {"type": "object"}  # ObjectMeta is validated elsewhere
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(root)
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(manifest)]


def manifest(spec_yaml: str) -> Schema:
    return {
        "apiVersion": "llmgw.dev/v1alpha1",
        "kind": "AIBackend",
        "metadata": {"name": "sample", "namespace": "default"},
        "spec": yaml.safe_load(spec_yaml),
    }


VALID = {
    "prompt-guards": """
        ai: {provider: {openai: {}}}
        policies:
          ai:
            promptGuard:
              streaming: Enabled
              request:
                - regex: {action: Reject, builtins: [Ssn, CreditCard], matches: ["(?i)secret"]}
                  response: {message: "no PII", statusCode: 422}
                  scope: [SystemPrompt, Messages, ToolInput]
                - webhook: {backendRef: {name: hook, port: 8000}, failureMode: FailOpen, timeout: 2s}
                - openAIModeration: {policies: {auth: {secretRef: {name: openai-key}}}}
                - bedrockGuardrails: {identifier: g, version: "1", region: us-east-1, policies: {auth: {aws: {}}}}
              response:
                - regex: {builtins: [CreditCard]}
                - googleModelArmor: {templateId: t, projectId: p, policies: {auth: {gcp: {}}}}
                - azureContentSafety: {endpoint: cs.cognitiveservices.azure.com, analyzeText: {severityThreshold: 4}}
    """,
    "openai-secretref": """
        ai:
          provider:
            openai: {model: gpt-4o-mini}
        policies:
          auth:
            secretRef: {name: openai-key}
    """,
    "custom-host-port": """
        ai:
          provider:
            name: local-llm
            custom: {model: "llama3.1:8b"}
            host: vllm.models.svc.cluster.local
            port: 8000
            pathPrefix: /v1
        policies:
          auth: {key: sk-local}
          http: {requestTimeout: 2m}
    """,
    "groups-failover": """
        ai:
          groups:
          - providers:
            - name: openai-primary
              openai: {model: gpt-4o}
              policies:
                auth: {secretRef: {name: openai-key, key: api-key}}
            - name: azure-east
              azureopenai:
                endpoint: east.openai.azure.com
                deploymentName: gpt-4o
                apiVersion: "2024-10-21"
              policies:
                auth:
                  secretRef: {name: azure-key}
                  location: {header: {name: api-key}}
          - providers:
            - name: anthropic-fallback
              anthropic: {model: claude-sonnet-4-5, apiVersion: "2023-06-01"}
              policies:
                auth:
                  secretRef: {name: anthropic-key}
                  location: {header: {name: x-api-key, prefix: ""}}
    """,
    "azure-managed-identity": """
        ai:
          provider:
            azure:
              resourceName: my-foundry
              resourceType: Foundry
              projectName: chat
              model: gpt-4o-mini
        policies:
          auth:
            azure:
              managedIdentity: {clientId: 00000000-0000-0000-0000-000000000000}
    """,
    "azure-default-chain": """
        ai:
          provider:
            azure: {resourceName: my-aoai, resourceType: OpenAI}
        policies:
          auth: {azure: {}}
    """,
    "azure-system-identity-and-workload": """
        ai:
          groups:
          - providers:
            - name: a
              azure: {resourceName: r1, resourceType: OpenAI}
              policies: {auth: {azure: {managedIdentity: {}}}}
            - name: b
              azure: {resourceName: r2, resourceType: OpenAI}
              policies: {auth: {azure: {workloadIdentity: {}}}}
    """,
    "bedrock-aws": """
        ai:
          provider:
            bedrock:
              model: anthropic.claude-3-5-haiku-20241022-v1:0
              region: eu-west-1
              guardrail: {identifier: gr-123, version: "1"}
        policies:
          auth: {aws: {secretRef: {name: aws-creds}}}
    """,
    "vertex-gcp": """
        ai:
          provider:
            vertexai: {model: gemini-2.5-flash, projectId: my-project, region: us-central1}
        policies:
          auth: {gcp: {}}
    """,
    "gemini-passthrough-tls": """
        ai:
          provider:
            gemini: {model: gemini-2.5-flash}
            host: gemini-proxy.internal
            port: 8443
            path: /v1beta/openai/chat/completions
        policies:
          auth: {passthrough: {}}
          tls:
            caCertificateRefs: [{kind: Secret, name: internal-ca}]
            sni: gemini-proxy.internal
          tcp: {connectTimeout: 5s}
    """,
    "status-written-by-controller": """
        ai:
          provider:
            openai: {}
    """,
}

# agentgateway AgentgatewayBackend manifests, as its documentation writes them (only
# apiVersion/kind differ): they must validate unchanged.
AGENTGATEWAY_COMPATIBLE = {
    "agw-openai-host-port": """
        ai:
          provider:
            openai: {model: mock-gpt-4o}
            host: mock-gpt-4o-svc.agentgateway-system.svc.cluster.local
            port: 8000
    """,
    "agw-azureopenai-groups": """
        ai:
          groups:
          - providers:
            - name: primary
              azureopenai:
                deploymentName: gpt-4o-mini
                apiVersion: 2024-02-15-preview
                endpoint: ai-gateway.openai.azure.com
          - providers:
            - name: secondary
              azureopenai:
                deploymentName: gpt-4o-mini-2
                apiVersion: 2024-02-15-preview
                endpoint: ai-gateway-2.openai.azure.com
              policies:
                auth:
                  secretRef:
                    name: azure-secret
    """,
    "agw-ai-routes": """
        ai:
          provider:
            openai: {model: gpt-4o-mini}
        policies:
          auth: {secretRef: {name: openai-secret}}
          ai:
            routes:
              /v1/chat/completions: Completions
              /v1/models: Passthrough
              "*": Passthrough
    """,
    "agw-tls-insecure-hostname": """
        ai:
          provider:
            anthropic: {model: claude-3-5-haiku-latest}
        policies:
          auth: {secretRef: {name: anthropic-secret}}
          tls:
            insecureSkipVerify: Hostname
            caCertificateRefs: [{name: my-ca}]
    """,
}

# Rejected by the openAPIV3Schema alone.
INVALID_SCHEMA = {
    "ai-routes-unknown-type": (
        """
        ai:
          provider: {openai: {}}
        policies:
          ai: {routes: {/v1/realtime: Realtime}}
        """,
        "spec.policies.ai.routes./v1/realtime",
    ),
    # agentgateway's custom.formats is not in the AIBackend CRD: llmgw does not implement it (README).
    "custom-formats": (
        """
        ai:
          provider:
            custom:
              model: gpt-oss
              formats:
              - type: Messages
                path: /anthropic/v1/messages
            host: ollama.local
            port: 11434
        """,
        "spec.ai.provider.custom",
    ),
    "guard-unknown-builtin": (
        """
        ai: {provider: {openai: {}}}
        policies: {ai: {promptGuard: {request: [{regex: {builtins: [Passport]}}]}}}
        """,
        "spec.policies.ai.promptGuard.request.0.regex.builtins.0",
    ),
    "guard-empty": (
        """
        ai: {provider: {openai: {}}}
        policies: {ai: {promptGuard: {}}}
        """,
        "spec.policies.ai.promptGuard",
    ),
    "port-zero": (
        """
        ai:
          provider: {custom: {}, host: h, port: 0}
        """,
        "spec.ai.provider.port",
    ),
    "port-too-large": (
        """
        ai:
          provider: {custom: {}, host: h, port: 65536}
        """,
        "spec.ai.provider.port",
    ),
    "unknown-resource-type": (
        """
        ai:
          provider: {azure: {resourceName: r, resourceType: Cognitive}}
        """,
        "spec.ai.provider.azure.resourceType",
    ),
    "tls-ca-kind": (
        """
        ai:
          provider: {openai: {}}
        policies:
          tls: {caCertificateRefs: [{kind: Service, name: ca}]}
        """,
        "spec.policies.tls.caCertificateRefs.0.kind",
    ),
    "insecure-skip-verify-bool": (
        """
        ai:
          provider: {openai: {}}
        policies:
          tls: {insecureSkipVerify: true}
        """,
        "spec.policies.tls.insecureSkipVerify",
    ),
    "unknown-field": (
        """
        ai:
          provider: {openai: {model: m, temperature: 0.2}}
        """,
        "spec.ai.provider.openai",
    ),
    "path-without-slash": (
        """
        ai:
          provider: {openai: {}, path: v1/chat/completions}
        """,
        "spec.ai.provider.path",
    ),
    "host-is-url": (
        """
        ai:
          provider: {custom: {}, host: "http://vllm:8000", port: 8000}
        """,
        "spec.ai.provider.host",
    ),
    "group-provider-without-name": (
        """
        ai:
          groups: [{providers: [{openai: {}}]}]
        """,
        "spec.ai.groups.0.providers.0",
    ),
    "empty-groups": (
        """
        ai:
          groups: []
        """,
        "spec.ai.groups",
    ),
    "bad-timeout": (
        """
        ai:
          provider: {openai: {}}
        policies:
          http: {requestTimeout: 30}
        """,
        "spec.policies.http.requestTimeout",
    ),
    "vertex-without-project": (
        """
        ai:
          provider: {vertexai: {region: us-central1}}
        """,
        "spec.ai.provider.vertexai",
    ),
    "missing-ai": (
        """
        policies: {auth: {key: k}}
        """,
        "spec",
    ),
}

# Valid for the openAPIV3Schema, rejected by a CEL rule (message fragment).
INVALID_CEL = {
    "guard-two-kinds": (
        """
        ai: {provider: {openai: {}}}
        policies: {ai: {promptGuard: {response: [{regex: {builtins: [Email]}, webhook: {host: h, port: 80}}]}}}
        """,
        "exactly one of regex, webhook",
    ),
    "guard-webhook-nowhere": (
        """
        ai: {provider: {openai: {}}}
        policies: {ai: {promptGuard: {request: [{webhook: {failureMode: FailOpen}}]}}}
        """,
        "exactly one of backendRef or host",
    ),
    "provider-and-groups": (
        """
        ai:
          provider: {openai: {}}
          groups: [{providers: [{name: a, openai: {}}]}]
        """,
        "exactly one of provider or groups",
    ),
    "neither-provider-nor-groups": ("ai: {}", "exactly one of provider or groups"),
    "two-provider-kinds": (
        """
        ai:
          provider: {openai: {}, anthropic: {}}
        """,
        "exactly one of openai,",
    ),
    "no-provider-kind": (
        """
        ai:
          provider: {name: x}
        """,
        "exactly one of openai,",
    ),
    "host-without-port": (
        """
        ai:
          provider: {openai: {}, host: proxy.local}
        """,
        "host and port must be set together",
    ),
    "custom-without-host": (
        """
        ai:
          provider: {custom: {model: m}}
        """,
        "custom providers require host and port",
    ),
    "path-and-prefix": (
        """
        ai:
          provider: {openai: {}, host: h, port: 80, path: /a, pathPrefix: /b}
        """,
        "path and pathPrefix are mutually exclusive",
    ),
    "duplicate-names-across-groups": (
        """
        ai:
          groups:
          - providers: [{name: a, openai: {}}]
          - providers: [{name: a, anthropic: {}}]
        """,
        "provider names must be unique",
    ),
    "duplicate-names-in-group": (
        """
        ai:
          groups:
          - providers: [{name: a, openai: {}}, {name: a, anthropic: {}}]
        """,
        "provider names must be unique",
    ),
    "two-auth-kinds": (
        """
        ai:
          provider: {openai: {}}
        policies:
          auth: {key: k, secretRef: {name: s}}
        """,
        "exactly one of key, secretRef",
    ),
    "location-with-aws": (
        """
        ai:
          provider: {bedrock: {}}
        policies:
          auth: {aws: {}, location: {header: {name: x-key}}}
        """,
        "location may only be set",
    ),
    "managed-identity-two-ids": (
        """
        ai:
          provider: {azure: {resourceName: r, resourceType: OpenAI}}
        policies:
          auth: {azure: {managedIdentity: {clientId: a, objectId: b}}}
        """,
        "at most one of clientId, objectId or resourceId",
    ),
    "azure-two-credentials": (
        """
        ai:
          provider: {azure: {resourceName: r, resourceType: OpenAI}}
        policies:
          auth: {azure: {secretRef: {name: s}, workloadIdentity: {}}}
        """,
        "at most one of secretRef, managedIdentity or workloadIdentity",
    ),
    "foundry-without-project": (
        """
        ai:
          provider: {azure: {resourceName: r, resourceType: Foundry}}
        """,
        "projectName is required",
    ),
    "azureopenai-dated-version-without-deployment": (
        """
        ai:
          provider: {azureopenai: {endpoint: e.openai.azure.com, apiVersion: "2024-10-21"}}
        """,
        "deploymentName is required",
    ),
    "insecure-all-with-ca": (
        """
        ai:
          provider: {openai: {}}
        policies:
          tls: {insecureSkipVerify: All, caCertificateRefs: [{name: ca}]}
        """,
        "may not be set together",
    ),
    "provider-policies-auth-two-kinds": (
        """
        ai:
          provider:
            openai: {}
            policies: {auth: {passthrough: {}, gcp: {}}}
        """,
        "exactly one of key, secretRef",
    ),
}


@pytest.mark.parametrize("name", sorted(VALID) + sorted(AGENTGATEWAY_COMPATIBLE))
def test_valid_samples_pass_schema(schema: Schema, name: str) -> None:
    doc = manifest(VALID.get(name) or AGENTGATEWAY_COMPATIBLE[name])
    if name == "status-written-by-controller":
        doc["status"] = {
            "conditions": [
                {
                    "type": "Accepted",
                    "status": "True",
                    "reason": "Accepted",
                    "message": "",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                    "observedGeneration": 1,
                }
            ]
        }
    assert schema_errors(schema, doc) == []


@pytest.mark.parametrize("name", sorted(VALID) + sorted(AGENTGATEWAY_COMPATIBLE))
def test_valid_samples_pass_cel(schema: Schema, name: str) -> None:
    doc = manifest(VALID.get(name) or AGENTGATEWAY_COMPATIBLE[name])
    assert cel_errors(schema, doc, "") == []


@pytest.mark.parametrize("name", sorted(INVALID_SCHEMA))
def test_invalid_samples_fail_schema(schema: Schema, name: str) -> None:
    spec_yaml, where = INVALID_SCHEMA[name]
    errors = schema_errors(schema, manifest(spec_yaml))
    assert errors, f"{name} was accepted"
    assert any(e.startswith(f"{where}:") for e in errors), errors


@pytest.mark.parametrize("name", sorted(INVALID_CEL))
def test_invalid_samples_fail_cel(schema: Schema, name: str) -> None:
    spec_yaml, message = INVALID_CEL[name]
    doc = manifest(spec_yaml)
    assert schema_errors(schema, doc) == [], "these samples must only break a CEL rule"
    errors = cel_errors(schema, doc, "")
    assert any(message in e for e in errors), errors


def test_every_cel_rule_parses(schema: Schema) -> None:
    for _, _, rule in all_rules(schema):
        cel_program(rule["rule"])


def example_aibackends() -> list[tuple[str, Schema]]:
    found = []
    for path in sorted((ROOT / "examples").rglob("*.y*ml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "AIBackend":
                found.append((f"{path.relative_to(ROOT)}:{doc['metadata']['name']}", doc))
    return found


def test_example_aibackends_validate(schema: Schema) -> None:
    examples = example_aibackends()
    assert examples, "the quickstart has an AIBackend under examples/"
    for where, doc in examples:
        assert doc["apiVersion"] == "llmgw.dev/v1alpha1", where
        assert schema_errors(schema, doc) == [], where
        if importlib.util.find_spec("celpy") is not None:
            assert cel_errors(schema, doc, "") == [], where
