"""Supervision of a use case's local servers: one ``supervisord`` per serving folder restarts what dies.

Plain functions, no Dagster. The router, each version's model server and its Feast
feature server run as ``supervisord`` programs (PyPI's ``supervisor``, a maintained
process supervisor), so a server that dies, by a crash or a ``kill -9``, is started
again within seconds on the same ports, and the stable endpoint comes back by itself.

What ``supervisord`` does not do, and this module adds:

- Each program is its own process group (supervisord puts it there). When a program's
  main process dies abruptly its helpers (gunicorn workers, Seldon's metrics server and
  multiprocessing manager) would be orphaned and keep the port: an event listener
  (``python -m platform_assets.deploy.supervision --reap``) kills the rest of the group
  of every program that exited, before the restart needs the port.
- A program's command, environment and directory are written to a JSON file beside
  its configuration and run by a tiny ``exec`` step (``--exec FILE``, same pid), not
  through supervisord's ``command=`` and ``environment=`` syntax, which cannot carry
  a JSON declaration or a newline without fragile quoting.

The control interface is XML-RPC on a loopback port with a random password kept in
the configuration file (mode 0600); an operator uses it with
``supervisorctl -c <serving folder>/supervisor/supervisord.conf status``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import sys
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from platform_assets import config
from platform_assets.deploy.processes import (
    free_port,
    group_alive,
    log_tail,
    poll_until_answers,
    read_record,
    spawn_detached,
)

SUPERVISOR_DIR = "supervisor"
RECORD = "supervisord.json"
_MARKERS = (b"supervisor.supervisord",)
# A program that dies within this many seconds of its start counts as a failed start (BACKOFF);
# after START_RETRIES of those in a row supervisord gives up on it (FATAL) and says so.
START_SECONDS = 1
START_RETRIES = 5
STOP_WAIT_S = 5  # SIGTERM, then SIGKILL to the whole group
LOG_BYTES = 10 * 1024 * 1024


class SupervisionError(RuntimeError):
    """supervisord could not be started or reached, or a program did not start."""


@dataclass(frozen=True)
class Program:
    """One supervised process: its command, environment, working directory and log file."""

    name: str
    command: list[str]
    env: dict
    cwd: Path
    log_path: Path
    start_retries: int = START_RETRIES


def _program(group: str, name: str) -> str:
    return f"{group}-{name}"


def _conf_path(serving_dir: Path) -> Path:
    return Path(serving_dir) / SUPERVISOR_DIR / "supervisord.conf"


def _quote(arg: str) -> str:
    """One argument of a supervisord ``command=`` line (it splits with shlex; ``%`` is its expansion)."""
    import shlex

    return shlex.quote(str(arg)).replace("%", "%%")


class Supervisor:
    """The supervisord of one serving folder, started on first use."""

    def __init__(self, serving_dir: Path):
        self.serving_dir = Path(serving_dir).resolve()
        self.dir = self.serving_dir / SUPERVISOR_DIR
        self.record_path = self.dir / RECORD

    # --- supervisord itself -------------------------------------------------------------------

    def _proxy(self, record: dict):
        url = f"http://platform:{record['password']}@127.0.0.1:{record['port']}/RPC2"
        return xmlrpc.client.ServerProxy(url).supervisor

    def configured(self) -> bool:
        """Whether programs are configured here (something was released and not stopped since)."""
        return any((self.dir / "programs").glob("*.conf"))

    def running(self) -> dict | None:
        """The record of a running supervisord that answers, else ``None``."""
        record = read_record(self.record_path)
        if not record or not group_alive(record["pid"]):
            return None
        try:
            if self._proxy(record).getState()["statename"] == "RUNNING":
                return record
        except (OSError, xmlrpc.client.Error):
            pass
        return None

    def ensure(self, timeout_s: float = 30.0):
        """The XML-RPC interface of the running supervisord, started first if needed.

        A supervisord started anew (after its own death, or a reboot) starts every program still
        configured here again, on its ports; what the dead one left running is stopped first.
        """
        record = self.running()
        if record:
            return self._proxy(record)
        self._stop_leftovers()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "programs").mkdir(exist_ok=True)
        logs = self.serving_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        port, password = free_port(), secrets.token_urlsafe(24)
        python = Path(sys.executable).absolute()
        conf = "\n".join([
            "[inet_http_server]", f"port=127.0.0.1:{port}", "username=platform", f"password={password}", "",
            "[supervisord]", "nodaemon=true", f"logfile={logs / 'supervisord.log'}", f"logfile_maxbytes={LOG_BYTES}",
            f"pidfile={self.dir / 'supervisord.pid'}", f"childlogdir={logs}", "loglevel=info", "",
            "[rpcinterface:supervisor]", "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", f"serverurl=http://127.0.0.1:{port}", "username=platform", f"password={password}", "",
            "[eventlistener:reaper]",
            f"command={_quote(python)} -m platform_assets.deploy.supervision --reap {_quote(self.dir / 'programs')}",
            "events=PROCESS_STATE_EXITED,PROCESS_STATE_BACKOFF,PROCESS_STATE_FATAL",
            f"stderr_logfile={logs / 'reaper.log'}", "autorestart=true", "",
            "[include]", "files = programs/*.conf", "",
        ])
        path = _conf_path(self.serving_dir)
        path.touch(mode=0o600)
        path.write_text(conf)
        os.chmod(path, 0o600)  # the password
        env = config.child_environment((str(Path(__file__).resolve().parents[2]),))
        process = spawn_detached([str(python), "-m", "supervisor.supervisord", "-c", str(path)],
                                 self.dir, env, logs / "supervisord.out")
        record = {"pid": process.pid, "port": port, "password": password, "conf": str(path)}
        self.record_path.write_text(json.dumps(record))
        os.chmod(self.record_path, 0o600)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SupervisionError(f"supervisord exited at start; log tail:\n{log_tail(logs / 'supervisord.out')}")
            if self.running():
                return self._proxy(record)
            time.sleep(0.1)
        raise SupervisionError(f"supervisord did not answer in {timeout_s} s; log tail:\n"
                               f"{log_tail(logs / 'supervisord.log')}")

    def _stop_leftovers(self) -> None:
        """Stops a supervisord that no longer answers, and the programs it ran (by the pids they wrote at start,
        each checked against its command line, so that a recycled pid is never hit)."""
        from platform_assets.deploy.processes import terminate_process_group

        record = read_record(self.record_path)
        if record and record.get("pid") and group_alive(record["pid"]):
            terminate_process_group(record["pid"])
        for pid_file in (self.dir / "programs").glob("*.pid"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                pid = int(pid_file.read_text())
                command = json.loads(pid_file.with_suffix(".json").read_text())["command"]
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:len(command)] == \
                        [c.encode() for c in command]:
                    terminate_process_group(pid)

    def shutdown(self) -> bool:
        """Stops every program (SIGTERM to each group, SIGKILL after the grace) and supervisord, and forgets
        the programs; programs a dead supervisord left running are stopped too.

        Returns:
            Whether a supervisord was running.
        """
        record = read_record(self.record_path)
        running = bool(record and record.get("pid") and group_alive(record["pid"]))
        if running:
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                self._proxy(record).stopAllProcesses(True)
        self._stop_leftovers()
        self.record_path.unlink(missing_ok=True)
        for conf in (self.dir / "programs").glob("*"):
            conf.unlink()
        return running

    # --- programs -----------------------------------------------------------------------------

    def add(self, group: str, programs: list[Program]) -> None:
        """Starts ``programs`` as the group ``group``, each restarted whenever it dies.

        A group of the same name is replaced.
        """
        rpc = self.ensure()
        self.remove(group)
        python = Path(sys.executable).absolute()
        # Program sections are global in supervisord's configuration: their names carry the group's.
        sections = [f"[group:{group}]", f"programs={','.join(_program(group, p.name) for p in programs)}", ""]
        for program in programs:
            env_file = self.dir / "programs" / f"{group}.{program.name}.json"
            env_file.write_text(json.dumps({"command": [str(a) for a in program.command], "cwd": str(program.cwd),
                                            "env": program.env}))
            os.chmod(env_file, 0o600)
            Path(program.log_path).parent.mkdir(parents=True, exist_ok=True)
            command = [str(python), "-m", "platform_assets.deploy.supervision", "--exec", str(env_file)]
            sections += [
                f"[program:{_program(group, program.name)}]", f"command={' '.join(_quote(a) for a in command)}",
                f"directory={program.cwd}", "autostart=true", "autorestart=true",
                f"startsecs={START_SECONDS}", f"startretries={program.start_retries}",
                "stopasgroup=true", "killasgroup=true", f"stopwaitsecs={STOP_WAIT_S}",
                "redirect_stderr=true", f"stdout_logfile={program.log_path}",
                f"stdout_logfile_maxbytes={LOG_BYTES}", "stdout_logfile_backups=1", "",
            ]
        (self.dir / "programs" / f"{group}.conf").write_text("\n".join(sections))
        rpc.reloadConfig()
        try:
            rpc.addProcessGroup(group)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_ADDED" not in fault.faultString:
                raise SupervisionError(f"supervisord did not take {group}: {fault.faultString}") from None

    def remove(self, group: str) -> bool:
        """Stops the group's programs (their whole process groups) and forgets them.

        Returns:
            Whether the group was there.
        """
        record = self.running()
        conf = self.dir / "programs" / f"{group}.conf"
        known = conf.exists()
        if record:
            rpc = self._proxy(record)
            with contextlib.suppress(xmlrpc.client.Fault):
                rpc.stopProcessGroup(group, True)
                known = True
            with contextlib.suppress(xmlrpc.client.Fault):
                rpc.removeProcessGroup(group)
        conf.unlink(missing_ok=True)
        for spec_file in [*(self.dir / "programs").glob(f"{group}.*.json"), *(self.dir / "programs").glob(f"{group}.*.pid")]:
            spec_file.unlink()
        return known

    def info(self, group: str, name: str) -> dict:
        """supervisord's view of one program: ``pid``, ``statename`` (RUNNING, BACKOFF, FATAL...), ``start``."""
        record = self.running()
        if not record:
            raise SupervisionError(f"no supervisord runs for {self.serving_dir}")
        try:
            return self._proxy(record).getProcessInfo(f"{group}:{_program(group, name)}")
        except xmlrpc.client.Fault as fault:
            raise SupervisionError(f"{group}:{name} is not supervised: {fault.faultString}") from None

    def given_up(self) -> list[str]:
        """The programs supervisord gave up on (FATAL: they died at every start), as ``group:program``."""
        record = self.running()
        if not record:
            return []
        return sorted(f"{p['group']}:{p['name']}" for p in self._proxy(record).getAllProcessInfo()
                      if p["statename"] == "FATAL")

    def pid(self, group: str, name: str) -> int:
        """The pid of the program's running process (0 when it is not running)."""
        return int(self.info(group, name)["pid"])

    def wait_until_answers(self, url: str, group: str, name: str, *, log_path: Path, timeout_s: float,
                           what: str, restarts_allowed: bool = False) -> float:
        """Polls ``GET url`` until it answers 200; returns the seconds waited.

        Args:
            restarts_allowed: Keep waiting while supervisord restarts the program; by default a
                program that exits before it answers (a crash at start) fails at once.

        Raises:
            SupervisionError: If the program exited (or supervisord gave up on it) before it answered,
                or ``timeout_s`` passed; with the log's tail.
        """
        first_pid = None

        def failed() -> str | None:
            nonlocal first_pid
            info = self.info(group, name)
            state, pid = info["statename"], info["pid"]
            first_pid = first_pid or pid
            exited = state in ("BACKOFF", "EXITED") or (pid and pid != first_pid)
            if state in ("FATAL", "STOPPED") or (exited and not restarts_allowed):
                return f"exited before it answered ({state})"
            return None

        return poll_until_answers(url, failed=failed, log_path=log_path, timeout_s=timeout_s, what=what,
                                  error=SupervisionError)


# --- the two helpers supervisord runs -------------------------------------------------------------


def _exec(program_file: str) -> None:
    """Replaces this process with the command of ``program_file``, in its working directory and environment.

    The pid (the same after ``exec``) is written beside it first: the reaper reads it for a program
    that died before supervisord saw it running (its event names no pid then).
    """
    spec = json.loads(Path(program_file).read_text())
    Path(program_file).with_suffix(".pid").write_text(str(os.getpid()))
    os.chdir(spec["cwd"])
    os.execve(spec["command"][0], spec["command"], spec["env"])


def _kill_rest_of_group(pid: int) -> bool:
    """SIGKILL to what is left of process group ``pid`` once its leader is gone; whether any was left."""
    from platform_assets.deploy.processes import is_alive

    if pid <= 1 or is_alive(pid):  # a live leader: the program runs (or was started again): leave it
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _reap(programs_dir: Path) -> None:
    """supervisord's event-listener protocol: for every program that exited, kill the rest of its group."""
    stdin, stdout = sys.stdin, sys.stdout
    while True:
        stdout.write("READY\n")
        stdout.flush()
        header = dict(token.split(":", 1) for token in stdin.readline().split())
        body = stdin.read(int(header.get("len", 0)))
        fields = dict(token.split(":", 1) for token in body.split("\n", 1)[0].split() if ":" in token)
        pid = fields.get("pid")
        if pid is None:  # died while starting (BACKOFF, FATAL): the pid it wrote at its start
            with contextlib.suppress(OSError, ValueError):
                group = fields.get("groupname", "")
                name = fields.get("processname", "").removeprefix(f"{group}-")
                pid = (programs_dir / f"{group}.{name}.pid").read_text()
        if pid and _kill_rest_of_group(int(pid)):
            print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {fields.get('groupname')}:{fields.get('processname')} "
                  f"pid {pid} {header.get('eventname')}: the rest of its process group was killed",
                  file=sys.stderr, flush=True)
        stdout.write("RESULT 2\nOK")
        stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--reap"] and len(sys.argv) == 3:
        _reap(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["--exec"] and len(sys.argv) == 3:
        _exec(sys.argv[2])
    else:
        sys.exit("usage: python -m platform_assets.deploy.supervision --reap PROGRAMS_DIR | --exec PROGRAM_FILE")
