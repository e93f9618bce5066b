#!/usr/bin/env bash
# Lints of the files the CI hosts read (issue 11), with the tools scripts/install-test-deps.sh installs:
#   - actionlint on every workflow and example workflow (it checks `$/dist/<stage>` steps against the actions'
#     action.yml, and `run:` scripts with shellcheck);
#   - check-jsonschema: the workflows against vendor.github-workflows, every action.yml against
#     vendor.github-actions, the Azure Pipelines templates against vendor.azure-pipelines (extended by the
#     ImagePipe@1 task, whose inputs come from task.json), and task.json against azure-task/schema/;
#   - zizmor (offline) on the workflows and example workflows: a finding above low fails;
#   - tfx extension create: the .vsix of azure-task/, its size printed; a binary executable or an archive in it
#     fails, and so does an extension version other than Cargo.toml's.
# check-jsonschema's vendor schemas come inside its package: nothing here needs the network.
# IMAGEPIPE_TOOLS_DIR overrides the tools dir (default: <repo>/tools), where tfx-cli is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

tools_dir=${IMAGEPIPE_TOOLS_DIR:-$PWD/tools}
tfx=$tools_dir/node/node_modules/.bin/tfx

step() { printf '==> %s\n' "$*"; }
fail() {
    printf 'lint-ci: %s\n' "$*" >&2
    exit 1
}

for tool in actionlint check-jsonschema zizmor python3; do
    command -v "$tool" >/dev/null 2>&1 || fail "\`$tool\` is not on PATH: run scripts/install-test-deps.sh"
done
[[ -x $tfx ]] || fail "tfx-cli is not in $tools_dir/node: run scripts/install-test-deps.sh"

shopt -s nullglob
workflows=(.github/workflows/*.yml)
examples=(examples/workflows/*.yml)
templates=(azure-task/templates/*.yml azure-task/templates/*/*.yml)
actions=(action.yml dist/*/action.yml)
shopt -u nullglob
((${#workflows[@]} > 0)) || fail "no workflow in .github/workflows"
((${#templates[@]} > 0)) || fail "no template in azure-task/templates"
task_json=azure-task/ImagePipeV1/task.json
[[ -f $task_json ]] || fail "$task_json is missing: \`imagepipe ci generate\` writes it"

step "actionlint $(actionlint -version | head -n1)"
actionlint "${workflows[@]}" "${examples[@]}"
echo "actionlint: ${#workflows[@]} workflows, ${#examples[@]} example workflows, no problem"

step "check-jsonschema --builtin-schema vendor.github-workflows"
check-jsonschema --builtin-schema vendor.github-workflows "${workflows[@]}" "${examples[@]}"

step "check-jsonschema --builtin-schema vendor.github-actions"
if ((${#actions[@]} > 0)); then
    check-jsonschema --builtin-schema vendor.github-actions "${actions[@]}"
else
    echo "no action.yml yet (\`imagepipe ci generate\` writes them)"
fi

step "zizmor $(zizmor --version | sed 's/^zizmor //') (offline; fails on findings above low)"
zizmor --quiet --offline --no-progress --config .github/zizmor.yml --min-severity medium "${workflows[@]}" "${examples[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Microsoft's schema knows only Microsoft's tasks and rejects any other `task:`. It is extended here by one
# branch for ImagePipe@1, whose inputs (and their aliases) are task.json's: an input the task does not
# declare, or a `stage` it does not offer, fails like a misspelt input of a built-in task. Azure reads every
# YAML scalar as a string, and the schema types them so; check-jsonschema's YAML loader makes `true` a
# boolean and `3` a number, so the schema's "any" and "boolean" take those too (`default: false`).
# The azure-pipelines data transform unwraps `${{ }}` template expressions, as check-jsonschema documents for
# this schema; the schema's patterns are ECMAScript regular expressions in non-unicode mode.
step "check-jsonschema: vendor.azure-pipelines with ImagePipe@1 from $task_json"
python3 - "$task_json" "$scratch/azure-pipelines.json" "${templates[@]}" <<'PYTHON'
import json
import sys
from importlib.resources import files

from ruamel.yaml import YAML

task_file, output, *templates = sys.argv[1:]
task = json.loads(open(task_file, encoding="utf-8").read())
schema = json.loads(
    files("check_jsonschema.builtin_schemas.vendor").joinpath("azure-pipelines.json").read_text("utf-8")
)
name = f"{task['name']}@{task['version']['Major']}"
inputs = {}
options = {}
for declared in task["inputs"]:
    rule = {}
    if declared.get("type") == "pickList" and declared.get("options"):
        for key in [declared["name"], *declared.get("aliases", [])]:
            options[key] = sorted(declared["options"])
        # A template expression or macro (`${{ parameters.x }}`, `$(x)`) stands for one of the values at run time.
        rule = {"anyOf": [{"enum": sorted(declared["options"])}, {"type": "string", "pattern": "[$]"}]}
    for key in [declared["name"], *declared.get("aliases", [])]:
        inputs[key] = rule
required = [declared["name"] for declared in task["inputs"] if declared.get("required") and not declared.get("visibleRule")]
definitions = schema["definitions"]
definitions["any"]["anyOf"].append({"type": ["boolean", "number"]})
definitions["boolean"]["anyOf"].append({"type": "boolean"})
definition = definitions["task"]
definition["properties"]["task"]["anyOf"].append({"enum": [name]})
definition["anyOf"].append(
    {
        "properties": {
            "task": {"pattern": f"^{name}$"},
            "inputs": {"properties": inputs, "additionalProperties": False, "required": required},
        },
        "required": ["task", "inputs"],
    }
)
open(output, "w", encoding="utf-8").write(json.dumps(schema))
print(f"{name}: {len(task['inputs'])} inputs from {task_file}")

# The schema's verdict on a step comes out of ~260 task branches, and its "best match" rarely names the input;
# the ImagePipe@1 steps are checked here first, with messages that do.
problems = []
def walk(node, file):
    if isinstance(node, dict):
        if str(node.get("task", "")).lower() == name.lower():
            step = node.get("name") or node.get("displayName") or name
            given = node.get("inputs") or {}
            for key in given:
                if key not in inputs:
                    problems.append(f"{file}: step `{step}`: `{key}` is not an input of {name}")
            for key, values in options.items():
                value = given.get(key)
                if value is not None and str(value) not in values and "$" not in str(value):
                    problems.append(f"{file}: step `{step}`: `{key}: {value}` is not one of {', '.join(values)}")
            for key in required:
                if key not in given:
                    problems.append(f"{file}: step `{step}`: {name} requires `{key}`")
        for value in node.values():
            walk(value, file)
    elif isinstance(node, list):
        for value in node:
            walk(value, file)
for template in templates:
    walk(YAML(typ="safe").load(open(template, encoding="utf-8")), template)
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
PYTHON
check-jsonschema --regex-variant nonunicode --data-transform azure-pipelines \
    --schemafile "$scratch/azure-pipelines.json" "${templates[@]}"

step "check-jsonschema: $task_json against azure-task/schema/tasks.schema.json"
# Microsoft writes its patterns for non-unicode ECMAScript (`\:`), as in the pipelines schema.
check-jsonschema --regex-variant nonunicode --schemafile azure-task/schema/tasks.schema.json "$task_json"

step "tfx extension create ($(node -p "require(process.argv[1]).version" "$tools_dir/node/node_modules/tfx-cli/package.json"))"
crate_version=$(sed -nE '/^\[package\]/,/^\[/ s/^version = "([^"]+)"/\1/p' Cargo.toml)
extension_version=$(node -p "require('./azure-task/vss-extension.json').version")
[[ $extension_version == "$crate_version" ]] ||
    fail "azure-task/vss-extension.json has version $extension_version, Cargo.toml $crate_version"
vsix=$scratch/imagepipe-$extension_version.vsix
"$tfx" extension create --root azure-task --manifest-globs vss-extension.json --output-path "$vsix" \
    --no-prompt --no-color >"$scratch/tfx.log" 2>&1 || {
    cat "$scratch/tfx.log" >&2
    fail "tfx extension create failed"
}
[[ -f $vsix ]] || { cat "$scratch/tfx.log" >&2; fail "tfx extension create wrote no .vsix"; }
python3 - "$vsix" <<'PYTHON'
import sys
import zipfile

# The first bytes of executables (ELF, PE, Mach-O and its universal form, WebAssembly) and of archives
# (gzip, zip, xz, zstd, bzip2) that could carry one.
SIGNATURES = {
    b"\x7fELF": "an ELF executable",
    b"MZ": "a Windows executable",
    b"\xfe\xed\xfa\xce": "a Mach-O executable",
    b"\xfe\xed\xfa\xcf": "a Mach-O executable",
    b"\xce\xfa\xed\xfe": "a Mach-O executable",
    b"\xcf\xfa\xed\xfe": "a Mach-O executable",
    b"\xca\xfe\xba\xbe": "a universal Mach-O executable",
    b"\x00asm": "WebAssembly",
    b"\x1f\x8b": "a gzip archive",
    b"PK\x03\x04": "a zip archive",
    b"\xfd7zXZ\x00": "an xz archive",
    b"\x28\xb5\x2f\xfd": "a zstd archive",
    b"BZh": "a bzip2 archive",
}
path = sys.argv[1]
problems = []
with zipfile.ZipFile(path) as vsix:
    entries = [entry for entry in vsix.infolist() if not entry.is_dir()]
    for entry in entries:
        head = vsix.open(entry).read(8)
        for magic, kind in SIGNATURES.items():
            if head.startswith(magic):
                problems.append(f"{entry.filename} is {kind}")
        print(f"  {entry.file_size:>9}  {entry.filename}")
size = __import__("os").path.getsize(path)
print(f"{path.rsplit('/', 1)[-1]}: {size} bytes ({size / 1024:.1f} KiB), {len(entries)} files")
if problems:
    for problem in problems:
        print(f"lint-ci: the .vsix must hold no binaries: {problem}", file=sys.stderr)
    sys.exit(1)
PYTHON

echo "lint-ci: every check passed"
