"""What the JT/T 808 and HJ 212 fleets share: the platform's REST API (a tenant and a profile of their own, reading
back what was stored), latency statistics and the printed result. Standard library only (/usr/bin/python3)."""

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


class Api:
    """Taihu's management API (ThingsBoard's paths): JWT in X-Authorization."""

    def __init__(self, base):
        self.base = base.rstrip("/")
        self.token = None

    def call(self, method, path, body=None, token=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token or self.token:
            request.add_header("X-Authorization", "Bearer " + (token or self.token))
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: {e.code} {e.read().decode(errors='replace')}") from None
        return json.loads(text) if text else None

    def login(self, user, password):
        return self.call("POST", "/api/auth/login", {"username": user, "password": password})["token"]

    def own_tenant(self, admin_user, admin_password, label):
        """A tenant and tenant administrator of this run's own; this Api then speaks as that administrator."""
        sys_token = self.login(admin_user, admin_password)
        run = uuid.uuid4().hex[:8]
        tenant = self.call("POST", "/api/tenant", {"title": f"{label}-{run}"}, sys_token)
        email, password = f"{label}-{run}@fleet.local", "fleet-" + uuid.uuid4().hex
        self.call("POST", "/api/user?sendActivationMail=false",
                  {"email": email, "authority": "TENANT_ADMIN", "password": password,
                   "tenantId": {"id": tenant["id"]["id"], "entityType": "TENANT"}}, sys_token)
        self.token = self.login(email, password)
        return run

    def provisioning_profile(self, name, key):
        """A device profile whose provision key lets unknown terminals or stations create their devices."""
        self.call("POST", "/api/deviceProfile", {
            "name": name, "provisionType": "ALLOW_CREATE_NEW_DEVICES",
            "profileData": {"provisionConfiguration": {
                "type": "ALLOW_CREATE_NEW_DEVICES", "provisionDeviceKey": key, "provisionDeviceSecret": "unused"}}})

    def stored_count(self, device_name, key, start_ms, end_ms):
        """How many points of key the device (by name) has in [start_ms, end_ms]."""
        device = self.call("GET", "/api/tenant/devices/" + urllib.parse.quote(device_name, safe=""))
        series = self.call("GET", f"/api/plugins/telemetry/DEVICE/{device['id']['id']}/values/timeseries"
                                  f"?keys={key}&startTs={start_ms}&endTs={end_ms}&limit=100000")
        return len(series.get(key, []))


def common_arguments(description, port):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--api", default="http://127.0.0.1:8080", help="Taihu's HTTP base address")
    parser.add_argument("--admin-user", default="sysadmin@taihu.local")
    parser.add_argument("--admin-password", required=True)
    parser.add_argument("--interval", type=float, default=10, help="seconds between one client's data uploads")
    parser.add_argument("--duration", type=float, default=60, help="seconds of sending")
    parser.add_argument("--verify", type=int, default=0, help="read back the stored points of this many clients")
    parser.add_argument("--json", help="write the result as JSON to this file")
    return parser


def percentile(sorted_values, q):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def latency_summary(latencies_ms):
    values = sorted(latencies_ms)
    return {"p50": percentile(values, 0.50), "p90": percentile(values, 0.90), "p99": percentile(values, 0.99),
            "p999": percentile(values, 0.999), "max": percentile(values, 1)}


def report(result):
    """Prints the result as `name: value` lines (latencies in ms) and writes it as JSON when asked."""
    for name, value in result.items():
        if name == "json":
            continue
        if isinstance(value, dict):
            value = " / ".join(f"{k} " + ("-" if v is None else f"{v:.2f}") for k, v in value.items())
        print(f"{name}: {value}")
    sys.stdout.flush()
    if result.get("json"):
        with open(result["json"], "w") as f:
            json.dump({k: v for k, v in result.items() if k != "json"}, f, indent=2)


def now_ms():
    return int(time.time() * 1000)
