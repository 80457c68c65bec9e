#!/usr/bin/env python3
"""Check docker-compose.yml (and compose/try/docker-compose.yml over it) without Docker.

CI has no Docker engine and no `docker compose` (v2); Debian's `docker-compose` is v1, whose
schema predates options this file uses (`bind.create_host_path`). So this does what
`docker compose config` does first, by the same rules: it interpolates `${VAR:-default}`
with an empty environment, validates each file against the Compose Specification's JSON
schema (compose/compose-spec.json, taken from compose-spec/compose-go, Apache-2.0), and
merges the override into the base file. Then it checks what a user meets on first start:

- every `depends_on` and named volume is defined;
- ports are published on the host's loopback only, and not on the ports a PostgreSQL or a
  NATS already running on the host holds (5432, 4222);
- every bind mount says `create_host_path: false`, so a missing file is an error rather
  than an empty directory created in its place;
- the service has a healthcheck, waits for `setup` to complete, and never runs `--dev`;
- with `--binary PATH`, the setup service's script runs (paths moved to a temporary
  directory): it must stop with a message while the key set is missing, then create the
  keys and print the verifier key, and keep them on a second start; and the service's
  healthcheck command runs against a real `amtsbuch serve` and must succeed once the server
  is ready and fail once it is gone.

Usage: compose/check.py [--binary target/debug/amtsbuch]. Exits non-zero on any finding.
Needs PyYAML and jsonschema (Debian: python3-yaml python3-jsonschema).
"""

import copy
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = os.path.join(ROOT, "docker-compose.yml")
TRY = os.path.join(ROOT, "compose", "try", "docker-compose.yml")
SCHEMA = os.path.join(ROOT, "compose", "compose-spec.json")
# Ports a developer's machine often serves already.
BUSY_HOST_PORTS = {"4222", "5432"}

findings = []


def finding(where, what):
    findings.append(f"{where}: {what}")


# ---- interpolation (compose-spec/interpolation.md), with an empty environment --------

VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def substitute(text, where):
    def one(m):
        if m.group("escaped"):
            return "$"
        if m.group("named"):
            return ""
        body = m.group("braced")
        for op in (":-", "-", ":?", "?", ":+", "+"):
            if op in body:
                name, arg = body.split(op, 1)
                if op in (":-", "-"):
                    return substitute(arg, where)
                if op in (":?", "?"):
                    finding(where, f"${{{body}}} requires {name} to be set")
                    return ""
                return ""
        return ""

    return VARIABLE.sub(one, text)


def interpolate(node, where="$"):
    if isinstance(node, dict):
        return {k: interpolate(v, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str):
        return substitute(node, where)
    return node


def load(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    doc = interpolate(doc, os.path.relpath(path, ROOT))
    with open(SCHEMA, encoding="utf-8") as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        finding(os.path.relpath(path, ROOT), f"{where}: {error.message}")
    return doc


# ---- merging an override file (compose-spec/13-merge.md), the parts used here ---------


def mount_target(volume):
    if isinstance(volume, dict):
        return volume.get("target")
    parts = volume.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def merge_service(base, override):
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key == "volumes":
            by_target = {mount_target(v): v for v in merged.get("volumes", [])}
            for v in value:
                by_target[mount_target(v)] = v
            merged["volumes"] = list(by_target.values())
        elif key == "environment" and isinstance(value, dict):
            merged.setdefault("environment", {}).update(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def merge(base, override):
    merged = copy.deepcopy(base)
    for name, service in override.get("services", {}).items():
        if name in merged["services"]:
            merged["services"][name] = merge_service(merged["services"][name], service)
        else:
            merged["services"][name] = copy.deepcopy(service)
    for key in ("volumes", "networks", "secrets", "configs"):
        if key in override:
            merged.setdefault(key, {}).update(override[key] or {})
    return merged


# ---- what a user meets -----------------------------------------------------------------


def check(config, label):
    services = config.get("services", {})
    volumes = set((config.get("volumes") or {}).keys())
    for name, service in services.items():
        where = f"{label}: services.{name}"
        depends = service.get("depends_on", {})
        for other in depends if isinstance(depends, (list, dict)) else []:
            if other not in services:
                finding(where, f"depends on {other}, which is not defined")
        for port in service.get("ports", []):
            text = str(port)
            parts = text.split(":")
            if len(parts) != 3 or parts[0] != "127.0.0.1":
                finding(where, f"port {text} is not published on 127.0.0.1 only")
            elif parts[1] in BUSY_HOST_PORTS:
                finding(where, f"port {text} takes the host's {parts[1]}, often in use already")
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source = volume.split(":")[0]
                if source.startswith((".", "/", "~")):
                    finding(where, f"bind mount {volume} in short syntax creates a missing source as a directory")
                elif source not in volumes:
                    finding(where, f"volume {source} is not declared")
            elif volume.get("type") == "bind":
                if (volume.get("bind") or {}).get("create_host_path") is not False:
                    finding(where, f"bind mount of {volume.get('source')} lacks create_host_path: false")
            elif volume.get("type") == "volume" and volume.get("source") not in volumes:
                finding(where, f"volume {volume.get('source')} is not declared")
        env = service.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
        command = " ".join(str(c) for c in (service.get("command") or []))
        if "AMTSBUCH_DEV" in env or "--dev " in f"{command} ":
            finding(where, "runs with --dev, which a server listening on 0.0.0.0 refuses")
    service = services.get("amtsbuch")
    if service is None:
        finding(label, "there is no amtsbuch service")
        return
    if not (service.get("healthcheck") or {}).get("test"):
        finding(f"{label}: services.amtsbuch", "has no healthcheck")
    setup = (service.get("depends_on") or {}).get("setup") or {}
    if setup.get("condition") != "service_completed_successfully":
        finding(f"{label}: services.amtsbuch", "does not wait for setup to complete")
    for volume in service.get("volumes", []):
        if isinstance(volume, dict) and volume.get("type") == "bind":
            source = os.path.join(ROOT, volume["source"])
            if label.endswith("try") and not os.path.isfile(source):
                finding(f"{label}: services.amtsbuch", f"mounts {volume['source']}, which is not a file")


# ---- the healthcheck against a real server ---------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_healthcheck(test, port):
    if test[0] == "CMD-SHELL":
        argv = ["sh", "-c", test[1]]
    else:
        argv = list(test[1:])
    argv = [a.replace("127.0.0.1/8080", f"127.0.0.1/{port}") for a in argv]
    try:
        return subprocess.run(argv, timeout=5, capture_output=True).returncode
    except subprocess.TimeoutExpired:
        return -1


def check_healthcheck(config, binary):
    test = config["services"]["amtsbuch"]["healthcheck"]["test"]
    port = free_port()
    with tempfile.TemporaryDirectory() as cwd:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMTSBUCH_")}
        env["AMTSBUCH_LOG"] = "error"
        server = subprocess.Popen(
            [binary, "serve", "--dev", "--listen", f"127.0.0.1:{port}"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while run_healthcheck(test, port) != 0:
                if server.poll() is not None:
                    finding("healthcheck", f"the server exited ({server.returncode})")
                    return
                if time.monotonic() > deadline:
                    finding("healthcheck", "never succeeded against a ready server")
                    return
                time.sleep(0.2)
        finally:
            server.terminate()
            server.wait(timeout=30)
    if run_healthcheck(test, port) == 0:
        finding("healthcheck", "succeeds with no server listening")


def check_setup(config, binary):
    """The setup service's script, run with its paths under a temporary directory and the
    binary's directory on PATH (chown left out: there is no user amtsbuch here)."""
    script = config["services"]["setup"]["command"][0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMTSBUCH_")}
    env["AMTSBUCH_ORIGIN"] = config["services"]["setup"]["environment"]["AMTSBUCH_ORIGIN"]
    env["PATH"] = os.path.dirname(os.path.abspath(binary)) + os.pathsep + env.get("PATH", "")
    env["AMTSBUCH_LOG"] = "warn"
    with tempfile.TemporaryDirectory() as root:
        keys, secrets = os.path.join(root, "keys"), os.path.join(root, "secrets")
        os.makedirs(keys)
        os.makedirs(secrets)
        local = (
            script.replace("/keys", keys)
            .replace("/secrets", secrets)
            .replace("$$", "$")
            .replace("chown amtsbuch:amtsbuch", "true")
        )

        def run():
            return subprocess.run(["sh", "-c", local], env=env, capture_output=True, text=True)

        missing = run()
        if missing.returncode == 0 or "secrets/jwks.json" not in missing.stderr:
            finding("setup", "does not stop with a clear message when secrets/jwks.json is missing")
        if os.listdir(keys):
            finding("setup", "creates keys although secrets/jwks.json is missing")
        with open(os.path.join(secrets, "jwks.json"), "w", encoding="utf-8") as f:
            f.write('{"keys": []}')
        first = run()
        if first.returncode != 0:
            finding("setup", f"fails with a key set present: {first.stderr.strip()}")
            return
        with open(os.path.join(keys, "amtsbuch.vkey"), encoding="utf-8") as f:
            vkey = f.read().strip()
        if not vkey.startswith(env["AMTSBUCH_ORIGIN"] + "+") or vkey not in first.stdout:
            finding("setup", "does not print the log's verifier key")
        with open(os.path.join(keys, "amtsbuch-signing.pk8"), "rb") as f:
            key = f.read()
        again = run()
        with open(os.path.join(keys, "amtsbuch-signing.pk8"), "rb") as f:
            if again.returncode != 0 or f.read() != key or vkey not in again.stdout:
                finding("setup", "a second start does not keep the keys of the first")


def main():
    binary = None
    args = sys.argv[1:]
    if args[:1] == ["--binary"] and len(args) == 2:
        binary = args[1]
    elif args:
        sys.exit(__doc__)
    base = load(BASE)
    override = load(TRY)
    check(base, "docker-compose.yml")
    tried = merge(base, override)
    check(tried, "docker-compose.yml + compose/try")
    for name in ("jwks.json", "token-key.pk8"):
        if not os.path.isfile(os.path.join(ROOT, "compose", "try", name)):
            finding("compose/try", f"{name} is missing")
    if binary and not findings:
        check_setup(base, binary)
        check_healthcheck(base, binary)
    for f in findings:
        print(f, file=sys.stderr)
    if findings:
        sys.exit(1)
    print(
        "ok: docker-compose.yml and compose/try/docker-compose.yml are valid Compose files"
        + (
            "; setup stops without a key set and makes and keeps the keys with one; and the"
            " healthcheck tells a ready server from none"
            if binary
            else ""
        )
    )


if __name__ == "__main__":
    main()
