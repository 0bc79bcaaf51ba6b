#!/usr/bin/env python3
"""Snapshot restore measured against the pre-booted pool (issue: warm path, item 2).

Boots a template VM of the busybox image to its waiting point (the guest has mounted its image
and blocks on the control port), saves it with QEMU migration while its RAM lives in a shared
file (`x-ignore-shared`: the state file then holds only device state), and starts clones with
`-incoming` from it, each mapping the RAM file copy-on-write (share=off) with its own I/O disk
and control socket. Each clone gets a job (`echo hi`) written to its I/O disk and `go <seed>`.

    bench/snapshot.py [--runs N]

Prints, for the same job: restore-to-running time, go-to-exit time, and the same for a
pre-booted VM (go-to-exit) and a cold boot (start-to-exit), medians over N runs.
Needs scripts/setup.sh (kernel, initramfs, busybox image) and target/release/pe.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CACHE = os.environ.get("PE_CACHE_DIR", os.path.expanduser("~/.cache/program-explorer"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEM_MIB = 1024


def tsc_khz():
    for line in open("/proc/cpuinfo"):
        if line.startswith("cpu MHz"):
            return int(float(line.split(":")[1]) * 1000)
    return 2_000_000


def busybox_image():
    ref = json.load(open(f"{CACHE}/images/refs/busybox.json"))
    return f"{CACHE}/images/sha256/{ref['digest'].split(':')[1]}"


def qemu_cmd(work, io, ram_file, share, incoming):
    cmdline = f"quiet panic=-1 reboot=t rdinit=/init random.trust_cpu=on tsc_early_khz={tsc_khz()} nolapic_timer pe.warm=squashfs"
    cmd = [
        "qemu-system-x86_64", "-M", "microvm,acpi=off,x-option-roms=off,pit=on,pic=on,isa-serial=off,rtc=on,memory-backend=mem",
        "-accel", "tcg", "-nodefaults", "-no-user-config", "-nographic", "-serial", "none", "-no-reboot",
        "-bios", "/usr/share/qemu/qboot.rom", "-m", str(MEM_MIB), "-smp", "1",
        "-object", f"memory-backend-file,id=mem,size={MEM_MIB}M,mem-path={ram_file},share={'on' if share else 'off'}",
        "-kernel", f"{CACHE}/vmlinux", "-initrd", f"{CACHE}/initramfs.cpio", "-append", cmdline,
        "-drive", f"id=image,file={busybox_image()},format=raw,if=none,cache=unsafe,readonly=on",
        "-device", "virtio-blk-device,drive=image,serial=pe-image",
        "-drive", f"id=io,file={io},format=raw,if=none,cache=unsafe",
        "-device", "virtio-blk-device,drive=io,serial=pe-io",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
        "-device", "virtio-serial-device",
        "-chardev", f"socket,id=ctl,path={work}/ctl.sock,server=on,wait=off",
        "-device", "virtserialport,chardev=ctl,name=pe.ctl",
        "-qmp", f"unix:{work}/qmp.sock,server=on,wait=off",
    ]
    if incoming:
        cmd += ["-incoming", "defer"]
    return cmd


def connect(path, deadline=30):
    end = time.time() + deadline
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            return s
        except OSError:
            if time.time() > end:
                raise
            time.sleep(0.005)


class Qmp:
    def __init__(self, path):
        self.sock = connect(path)
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        self.file.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.file.flush()
        while True:
            msg = json.loads(self.file.readline())
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise RuntimeError(f"{name}: {msg['error']}")


def write_request(io_path):
    """The job's request in the guest protocol (shared/src/guest.rs): header, then the archive."""
    header = json.dumps({
        "version": 1, "argv": ["echo", "hi"], "env": ["PATH=/bin:/usr/bin", "HOME=/tmp"], "cwd": "/input",
        "image_format": "squashfs",
        "limits": {"timeout_ms": 10000, "stdout_bytes": 1 << 20, "stderr_bytes": 1 << 20,
                   "output_bytes": 1 << 24, "output_entries": 256, "scratch_mib": 256, "pids_max": 256,
                   "memory_mib": 928},
        "seed": "00" * 32,
    }).encode()
    # An archive with just the `input` directory, written the way the shared encoder does.
    def entry(name, mode, ino):
        name_b = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 2 if mode & 0o040000 else 1, 0, 0, 0, 0, 0, 0, len(name_b), 0]
        h = b"070701" + b"".join(f"{f:08X}".encode() for f in fields) + name_b
        return h + b"\0" * ((4 - len(h) % 4) % 4)
    archive = entry("input", 0o040755, 1) + entry("TRAILER!!!", 0, 0)
    data = len(header).to_bytes(4, "little") + header + len(archive).to_bytes(4, "little") + archive
    with open(io_path, "r+b") as f:
        f.write(data)


def read_answer(io_path):
    with open(io_path, "rb") as f:
        head = f.read(16)
        if head[:4] != b"PEGR":
            return None
        hlen = int.from_bytes(head[12:16], "little")
        return json.loads(f.read(hlen))


def new_io(work):
    io = os.path.join(work, "io")
    with open(io, "wb") as f:
        f.truncate(32 << 20)
    return io


def run_job(proc, work, io, ctl=None):
    """Writes the request, says go, waits for the VM to exit. Returns go-to-exit seconds."""
    write_request(io)
    ctl = ctl or connect(os.path.join(work, "ctl.sock"))
    t0 = time.perf_counter()
    ctl.sendall(b"go " + b"11" * 32 + b"\n")
    proc.wait(timeout=60)
    took = time.perf_counter() - t0
    answer = read_answer(io)
    if not answer or answer.get("kind") != "finished":
        raise SystemExit(f"the job failed: {answer}")
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=6)
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="pe-snapshot-")
    ram = f"/dev/shm/pe-template-{os.getpid()}"
    try:
        # 1. Template: boot to the waiting point, save with RAM in the shared file.
        tdir = os.path.join(base, "template")
        os.makedirs(tdir)
        t0 = time.perf_counter()
        template = subprocess.Popen(qemu_cmd(tdir, new_io(tdir), ram, True, False), stderr=subprocess.PIPE)
        ctl = connect(os.path.join(tdir, "ctl.sock"))
        assert ctl.makefile().readline().strip() == "ready"
        boot = time.perf_counter() - t0
        qmp = Qmp(os.path.join(tdir, "qmp.sock"))
        qmp.cmd("stop")
        qmp.cmd("migrate-set-capabilities", capabilities=[{"capability": "x-ignore-shared", "state": True}])
        state = os.path.join(base, "state")
        t0 = time.perf_counter()
        qmp.cmd("migrate", uri=f"exec:cat > {state}")
        while qmp.cmd("query-migrate").get("status") not in ("completed", "failed"):
            time.sleep(0.005)
        status = qmp.cmd("query-migrate")["status"]
        save = time.perf_counter() - t0
        qmp.cmd("quit")
        template.wait(timeout=10)
        if status != "completed":
            raise SystemExit(f"migration {status}: {template.stderr.read().decode()[-500:]}")
        print(f"template: booted to ready in {boot * 1000:.0f} ms, saved in {save * 1000:.0f} ms, "
              f"state file {os.path.getsize(state) // 1024} KiB (RAM stays in {ram})", file=sys.stderr)

        # 2. Clones: restore, cont, go.
        restore, go_exit, total = [], [], []
        for i in range(args.runs):
            cdir = os.path.join(base, f"clone{i}")
            os.makedirs(cdir)
            io = new_io(cdir)
            t0 = time.perf_counter()
            proc = subprocess.Popen(qemu_cmd(cdir, io, ram, False, True), stderr=subprocess.PIPE)
            qmp = Qmp(os.path.join(cdir, "qmp.sock"))
            qmp.cmd("migrate-set-capabilities", capabilities=[{"capability": "x-ignore-shared", "state": True}])
            qmp.cmd("migrate-incoming", uri=f"exec:cat {state}")
            while qmp.cmd("query-status")["status"] not in ("paused", "postmigrate", "running") or \
                    qmp.cmd("query-migrate").get("status") not in ("completed",):
                time.sleep(0.002)
            qmp.cmd("cont")
            restored = time.perf_counter() - t0
            took = run_job(proc, cdir, io)
            restore.append(restored)
            go_exit.append(took)
            total.append(restored + took)

        # 3. The same job on pre-booted VMs (go to exit) and cold boots (start to exit).
        warm, cold = [], []
        for i in range(args.runs):
            wdir = os.path.join(base, f"warm{i}")
            os.makedirs(wdir)
            io = new_io(wdir)
            proc = subprocess.Popen(qemu_cmd(wdir, io, f"{ram}-w{i}", False, False), stderr=subprocess.PIPE)
            ctl = connect(os.path.join(wdir, "ctl.sock"))
            assert ctl.makefile().readline().strip() == "ready"
            warm.append(run_job(proc, wdir, io, ctl))
            os.unlink(f"{ram}-w{i}") if os.path.exists(f"{ram}-w{i}") else None
            cdir = os.path.join(base, f"cold{i}")
            os.makedirs(cdir)
            io = new_io(cdir)
            t0 = time.perf_counter()
            proc = subprocess.Popen(qemu_cmd(cdir, io, f"{ram}-c{i}", False, False), stderr=subprocess.PIPE)
            ctl = connect(os.path.join(cdir, "ctl.sock"))
            assert ctl.makefile().readline().strip() == "ready"
            cold.append(time.perf_counter() - t0 + run_job(proc, cdir, io, ctl))
            os.unlink(f"{ram}-c{i}") if os.path.exists(f"{ram}-c{i}") else None

        med = lambda xs: statistics.median(xs) * 1000  # noqa: E731
        print(f"| `echo hi` (busybox), {args.runs} runs, TCG | median ms |")
        print("| --- | ---: |")
        print(f"| snapshot clone: start QEMU + restore + cont | {med(restore):.0f} |")
        print(f"| snapshot clone: go -> exit | {med(go_exit):.0f} |")
        print(f"| snapshot clone: whole job (restore + run) | {med(total):.0f} |")
        print(f"| pre-booted VM: go -> exit (boot paid before, off the critical path) | {med(warm):.0f} |")
        print(f"| cold boot: start -> exit | {med(cold):.0f} |")
    finally:
        shutil.rmtree(base, ignore_errors=True)
        for name in os.listdir("/dev/shm"):
            if name.startswith(f"pe-template-{os.getpid()}"):
                os.unlink(os.path.join("/dev/shm", name))


if __name__ == "__main__":
    sys.exit(main())
