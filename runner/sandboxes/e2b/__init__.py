"""The E2B cloud backend: one E2B code-interpreter sandbox per chat session, via the official SDK.

This package is the only code that imports `e2b_code_interpreter`. Nothing connects at import time.

- `create` starts a sandbox whose E2B `timeout` is the idle timeout, the backstop that ends its
  billing if this server dies; every run pushes that timeout forward (`set_timeout`).
- `connect` re-attaches to a sandbox by id, e.g. after our server restarted; a sandbox E2B no
  longer knows raises `SandboxGone`.
- `run` streams the SDK's callbacks as our events, in order, under our own deadline: the SDK's
  own execution timeout has been reported to fire late (e2b-dev/E2B#1881). Stopping or timing
  out closes the streaming request, which makes E2B interrupt the kernel; the sandbox lives on.
  Such a cut run settles the context before it returns (`E2BSandbox._settle`): otherwise E2B's
  server can leave the next request hanging on ipykernel's abort of it.
- Every SDK failure becomes a `SandboxError` whose message is fit for the page. The API key is
  never put in a message, a log line, or the sandbox's environment.

Modules: `config` (E2BConfig), `backend` (E2BBackend), `sandbox` (E2BSandbox), `errors` (SDK
failures → SandboxError), `inputs` (paths, package names, MIME bundles).
"""

from runner.sandboxes.e2b.backend import E2BBackend
from runner.sandboxes.e2b.config import E2BConfig
from runner.sandboxes.e2b.inputs import install_command, mime_bundle, workspace_path
from runner.sandboxes.e2b.sandbox import E2BSandbox

__all__ = ["E2BBackend", "E2BConfig", "E2BSandbox", "install_command", "mime_bundle", "workspace_path"]
