"""Run inside an image (python3, no network, nothing installed): what it holds, as JSON on
stdout: every Python distribution with its license metadata, every Debian package from
dpkg's database, and the OS release. The host turns it into a CycloneDX document."""

import importlib.metadata as md
import json
import subprocess


def python_distributions():
    rows = {}
    for dist in md.distributions():
        meta = dist.metadata
        name = meta["Name"]
        # the first on sys.path is the one that imports (a system Python may hold two)
        if not name or name.lower() in rows:
            continue
        classifiers = [c.split(" :: ")[-1] for c in meta.get_all("Classifier") or []
                       if c.startswith("License :: ")]
        license_text = (meta.get("License") or "").strip()
        wheel = dist.read_text("WHEEL") or ""
        build = next((line.split(":", 1)[1].strip() for line in wheel.splitlines()
                      if line.startswith("Build:")), "")
        rows[name.lower()] = {
            "name": name,
            "version": dist.version,
            "license_expression": (meta.get("License-Expression") or "").strip(),
            # a License field that is a whole license text names nothing: keep short ones
            "license": license_text if "\n" not in license_text and len(license_text) < 80
            else "",
            "license_classifiers": classifiers,
            "build": build,  # the wheel's build tag: the factory's wheels carry one
        }
    return sorted(rows.values(), key=lambda r: r["name"].lower())


def debian_packages():
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Architecture}\t"
             "${db:Status-Abbrev}\t${source:Package}\n"],
            capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    rows = []
    for line in out.splitlines():
        name, version, arch, status, source = (line.split("\t") + [""] * 5)[:5]
        if status.startswith("ii"):
            rows.append({"name": name, "version": version, "arch": arch,
                         "source": source or name})
    return rows


def os_release():
    found = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                if key:
                    found[key] = value.strip('"')
    except OSError:
        pass
    return {k: found.get(k, "") for k in ("ID", "VERSION_ID", "VERSION_CODENAME",
                                          "PRETTY_NAME")}


if __name__ == "__main__":
    print(json.dumps({"python": python_distributions(), "debian": debian_packages(),
                      "os": os_release()}))
