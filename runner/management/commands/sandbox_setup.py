"""Build the kernels' environment (idempotent): a venv on /usr/bin/python3 at SANDBOX_KERNEL_ENV."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

REQUIREMENTS = Path(__file__).resolve().parents[2] / "sandboxes" / "kernel-requirements.txt"


class Command(BaseCommand):
    help = "Create or update the sandbox kernels' environment (a venv separate from the app's)."

    def handle(self, *args: object, **options: object) -> None:
        self.ensure_sandbox_user()
        self.ensure_kernel_env()
        self.check_sandbox()

    def check_sandbox(self) -> None:
        """Start one throwaway sandbox, so a machine that can't isolate code says so at set-up."""
        from runner.sandboxes.local import LocalBackend

        problem = LocalBackend().self_test()
        if problem:
            self.stderr.write(f"[setup] warning: the local sandbox can't run code here: {problem}")
            self.stderr.write("[setup] Sandpit will run in degraded mode (or set E2B_API_KEY to use E2B).")

    def ensure_sandbox_user(self) -> None:
        """As root, kernels run as a dedicated system user with no home, shell or groups."""
        if os.geteuid() != 0:
            return
        try:
            pwd.getpwnam(settings.SANDBOX_USER)
            return
        except KeyError:
            pass
        self.stdout.write(f"[setup] creating the sandbox user {settings.SANDBOX_USER}")
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", "--user-group", settings.SANDBOX_USER],
            check=True,
        )

    def ensure_kernel_env(self) -> None:
        env_dir: Path = settings.SANDBOX_KERNEL_ENV
        want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
        stamp = env_dir / ".sandpit-stamp"
        if stamp.exists() and stamp.read_text().strip() == want and (env_dir / "bin" / "python").exists():
            return
        if not Path("/usr/bin/python3").exists():
            raise CommandError("/usr/bin/python3 is missing: install Debian's python3 and python3-venv")
        self.stdout.write(f"[setup] building the kernels' environment in {env_dir} (a few minutes, once)")
        env_dir.parent.mkdir(parents=True, exist_ok=True)
        if not (env_dir / "bin" / "python").exists():
            shutil.rmtree(env_dir, ignore_errors=True)
            subprocess.run(["/usr/bin/python3", "-m", "venv", str(env_dir)], check=True)
        pip = [str(env_dir / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "install", "-r", str(REQUIREMENTS)], check=True)
        env_dir.chmod(0o755)
        stamp.write_text(want + "\n")
        self.stdout.write("[setup] kernels' environment ready")
