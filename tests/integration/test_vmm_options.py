"""canopy-vmm's command line and --config file (lib/opts): the file fills
what the command line leaves unset, command-line-only options are refused
in the file, and every bad value says which option it is."""
import os
import subprocess

import pytest


def vmm_bin(build_dir):
    return os.path.join(str(build_dir), "bin", "canopy-vmm")


def hello(build_dir):
    return os.path.join(str(build_dir), "tests", "kvm", "hello.elf")


def run_vmm(build_dir, *args):
    return subprocess.run([vmm_bin(build_dir)] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=20)


def test_help(build_dir):
    r = run_vmm(build_dir, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: canopy-vmm --kernel FILE")


@pytest.mark.parametrize("text,words", [
    ("memory = 8\n", "memory (MiB): 8 is out of range"),
    ("cpus = 0\n", "cpus: 0 is out of range"),
    ("hugepages = maybe\n", "hugepages"),
    ("memroy = 64\n", "unknown key 'memroy'"),
    # Command-line-only options are not keys of the file.
    ("disk = path=/dev/null\n", "unknown key 'disk'"),
    ("log-level = debug\n", "unknown key 'log-level'"),
    ("incoming = tcp:127.0.0.1:1\n", "unknown key 'incoming'"),
    ("balloon = yes\n", "unknown key 'balloon'"),
    ("memory = 64\nmemory = 32\n", "duplicate key 'memory'"),
    ("memory 64\n", "expected 'key = value'"),
])
def test_bad_config_files(build_dir, tmp_path, text, words):
    conf = tmp_path / "vm.conf"
    conf.write_text("kernel = %s\n" % hello(build_dir) + text)
    r = run_vmm(build_dir, "--config", conf)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr


@pytest.mark.parametrize("args,words", [
    (["--config", "/nonexistent/vm.conf"], "/nonexistent/vm.conf"),
    (["--kernel", "K", "--log-level", "loud"], "--log-level loud"),
    (["--kernel", "K", "--rng"], "usage: canopy-vmm"),
    (["--kernel", "K", "--balloon=1"], "usage: canopy-vmm"),
    (["--kernel", "K"] + ["--disk", "path=/dev/null"] * 9,
     "at most 8 --disk options"),
    (["--kernel", "K"] + ["--net", "tap=t0"] * 5, "at most 4 --net"),
])
def test_bad_command_lines(build_dir, args, words):
    args = [hello(build_dir) if a == "K" else a for a in args]
    r = run_vmm(build_dir, *args)
    assert r.returncode == 2, r.stderr
    assert words in r.stderr


def test_command_line_wins(build_dir, tmp_path):
    """A bad value in the file is not looked at when the command line
    gives that option: the file's kernel is used, its memory is not."""
    conf = tmp_path / "vm.conf"
    conf.write_text("kernel = /nonexistent/from-file\nmemory = 8\n")
    r = run_vmm(build_dir, "--config", conf, "--memory", "64")
    assert r.returncode == 2, r.stderr
    assert "kernel /nonexistent/from-file: No such file" in r.stderr
    assert "out of range" not in r.stderr


@pytest.mark.kvm
def test_config_file_boots(build_dir, tmp_path):
    conf = tmp_path / "vm.conf"
    conf.write_text("kernel = %s\nmemory = 32\nserial = stdio\n"
                    "hugepages = no\n" % hello(build_dir))
    r = run_vmm(build_dir, "--config", conf, "--cpus", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "tiny-guest: hello\n"


def hugepages_free():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("HugePages_Free:"):
                return int(line.split()[1])
    return 0


@pytest.mark.kvm
def test_hugepages_pool_too_small_is_an_error(build_dir):
    """Guest RAM beyond the free huge pages: a clear error at start-up, not
    a SIGBUS when the guest first touches the missing pages."""
    mib = hugepages_free() * 2 + 64
    r = run_vmm(build_dir, "--kernel", hello(build_dir), "--memory", mib,
                "--hugepages")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "huge pages: No space left on device" in r.stderr, r.stderr
    assert "nr_hugepages" in r.stderr


@pytest.mark.kvm
def test_hugepages_boot(build_dir):
    if os.geteuid() != 0:
        pytest.skip("reserving huge pages needs root")
    path = "/proc/sys/vm/nr_hugepages"
    with open(path) as f:
        before = int(f.read())
    try:
        with open(path, "w") as f:
            f.write(str(before + 32))  # 64 MiB more
        if hugepages_free() < 32:
            pytest.skip("the kernel could not reserve 32 huge pages")
        r = run_vmm(build_dir, "--kernel", hello(build_dir), "--memory",
                    "64", "--serial", "stdio", "--hugepages")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "tiny-guest: hello\n"
    finally:
        with open(path, "w") as f:
            f.write(str(before))
