"""The sandbox launcher: `python -I -S sandbox_launcher.py CONFIG`, started by tools/sandbox.py for
every call. It enters the namespaces, mounts, limits and user the configuration asks for, then
execs the sandboxed interpreter and reports to the host over a pipe (see tools/sandbox.py).
"""

import ctypes
import marshal
import os
import resource
import signal
import sys

# It is started for every call, so it imports only cheap modules.

_CLONE_NEWNS, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x2, 0x4, 0x8, 0x1000, 0x4000, 0x40000
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID = 0x1, 0x2
_AT_FDCWD, _AT_RECURSIVE = -100, 0x8000
_SYS_MOUNT_SETATTR = 442  # the same on every architecture (Linux >= 5.12)
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _libc_call(what: str, name: str, *args) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _libc_call(f"mount {target}", "mount", os.fsencode(source), os.fsencode(target),
               fstype and os.fsencode(fstype), ctypes.c_ulong(flags), data and os.fsencode(data))


def _prctl(option: int, value: int) -> None:
    _libc_call("prctl", "prctl", option, ctypes.c_ulong(value), ctypes.c_ulong(0),
               ctypes.c_ulong(0), ctypes.c_ulong(0))


def _enter_namespaces(cfg: dict) -> None:
    """Private mount/network/PID namespaces; all mounts read-only except a tmpfs working dir."""
    _libc_call("unshare", "unshare", _CLONE_NEWNS | _CLONE_NEWNET | _CLONE_NEWPID)
    # one recursive call: private first, so nothing mounted below propagates back to the host
    attr = _MountAttr(attr_set=_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, propagation=_MS_PRIVATE)
    _libc_call("mount_setattr /", "syscall", ctypes.c_long(_SYS_MOUNT_SETATTR), _AT_FDCWD, b"/",
               ctypes.c_uint(_AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    uid, gid = cfg["user"]
    _mount("sandbox", cfg["work"], "tmpfs", _MS_NOSUID | _MS_NODEV,
           f"size={cfg['workdir_mb']}m,mode=0700,uid={uid},gid={gid}")
    if os.path.isdir("/dev/shm"):  # POSIX semaphores (multiprocessing) need a writable /dev/shm
        _mount("sandbox-shm", "/dev/shm", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={cfg['shm_mb']}m,mode=1777")
    # the bind inherits read-only from its (now read-only) source mount
    _mount(cfg["python_src"], cfg["python_dst"], None, _MS_BIND | _MS_REC)


def _drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)  # from root to another uid: all capabilities are cleared too


def _exec_user_code(cfg: dict) -> None:
    """In the process that becomes the sandboxed interpreter: files, limits, then exec."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)  # setuid binaries (su, sudo) cannot raise privileges again
    os.chdir(cfg["work"])
    for name, text in cfg["files"].items():
        os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
        with open(name, "w", encoding="utf-8") as f:
            f.write(text)
    for limit, value in cfg["limits"].items():
        resource.setrlimit(getattr(resource, limit), value)
    os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])


def _launch(config_path: str) -> None:
    with open(config_path, "rb") as f:
        cfg = marshal.load(f)
    status = cfg["status_fd"]
    os.set_inheritable(status, False)  # closed at exec: the sandboxed code cannot forge its status

    def report(message: str) -> None:
        os.write(status, (message + "\n").encode())

    try:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # if the host dies, the sandbox goes with it
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if not cfg["namespaces"]:  # python-guard mode: become the sandboxed interpreter directly
            if cfg["user"]:
                _drop_privileges(*cfg["user"])
            _exec_user_code(cfg)
        _enter_namespaces(cfg)
    except Exception as e:
        report(f"setup {type(e).__name__}: {e}")
        os._exit(127)
    pid = os.fork()
    if pid == 0:  # PID 1 of the new PID namespace
        try:
            _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
            _drop_privileges(*cfg["user"])
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # setuid cleared it
            _exec_user_code(cfg)
        except BaseException as e:
            report(f"setup {type(e).__name__}: {e}")
            os._exit(127)
    report(f"pid1 {pid}")
    # returns once PID 1 and, with it, every process of the namespace is gone
    _, wait_status, usage = os.wait4(pid, 0)
    report(f"exit {os.waitstatus_to_exitcode(wait_status)} {usage.ru_utime + usage.ru_stime}")
    os._exit(0)


if __name__ == "__main__":
    _launch(sys.argv[1])
