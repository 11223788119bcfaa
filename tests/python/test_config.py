"""`lakehouse serve` configuration on the real binary: precedence flags > LAKEHOUSE_* environment
> TOML file > defaults (observed through which storage directory the server creates), and
clear errors for bad settings."""

import os
import subprocess
import time

from conftest import BIN, LakehouseServer


def marker(path):
    return path / "_lakehouse" / "catalog.json"


def run_until_storage_exists(expected, args, env):
    """Starts `lakehouse serve ARGS`, waits until the storage root `expected` has been created,
    then stops it with SIGTERM and requires a clean exit."""
    proc = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", *args],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if marker(expected).exists():
            break
        time.sleep(0.05)
    proc.terminate()
    assert proc.wait(timeout=30) == 0, proc.stderr.read()


def test_precedence_flags_then_environment_then_file(tmp_path):
    config = tmp_path / "lakehouse.toml"
    config.write_text(f'storage = "{tmp_path / "from-file"}"\nshutdown_timeout_secs = 5\n')
    with_file = {"LAKEHOUSE_CONFIG": str(config)}
    with_env = {**with_file, "LAKEHOUSE_STORAGE": str(tmp_path / "from-env")}

    run_until_storage_exists(tmp_path / "from-file", [], with_file)
    assert marker(tmp_path / "from-file").exists()

    run_until_storage_exists(tmp_path / "from-env", [], with_env)
    assert marker(tmp_path / "from-env").exists()

    server = LakehouseServer(tmp_path / "from-flag", log_path=tmp_path / "s.log", env=with_env)
    server.stop()
    assert marker(tmp_path / "from-flag").exists()


def test_a_stop_during_start_up_exits_cleanly(tmp_path):
    proc = subprocess.Popen([BIN, "serve", "--listen", "127.0.0.1:0", "--storage",
                             str(tmp_path / "d"), "--sample", "tpch:0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    proc.terminate()
    assert proc.wait(timeout=60) == 0, proc.stderr.read()


def test_bad_configuration_is_reported(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('listen = "127.0.0.1:0"\nstorag = "typo"\n')
    out = subprocess.run([BIN, "serve", "--config", str(config)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "storag" in out.stderr and "bad.toml" in out.stderr, out.stderr
    out = subprocess.run([BIN, "serve", "--sample", "tpch:zero"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert "expected tpch:SCALE" in out.stderr, out.stderr
    out = subprocess.run([BIN, "serve", "--config", str(tmp_path / "missing.toml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "does not exist" in out.stderr, out.stderr


def test_user_add_writes_hashes_and_refuses_duplicates(tmp_path):
    import subprocess

    from conftest import BIN, add_user

    config = tmp_path / "lakehouse.toml"
    config.write_text("# kept\n[auth]\nmode = \"basic\"\n")
    add_user(config, "ann", "pw-1", "write")
    text = config.read_text()
    assert text.startswith("# kept") and "$argon2id$" in text and "pw-1" not in text
    run = lambda *args, password="pw-2\n": subprocess.run(
        [BIN, "user", "add", *args, "--config", str(config)],
        input=password, capture_output=True, text=True, timeout=60)
    duplicate = run("ann")
    assert duplicate.returncode == 1 and "exists; use --replace" in duplicate.stderr
    assert config.read_text() == text, "a refused change leaves the file as it was"
    empty = run("bob", password="\n")
    assert empty.returncode == 1 and "empty password" in empty.stderr
    assert run("ann", "--replace", "--role", "read").returncode == 0
    assert 'role = "read"' in config.read_text() and config.read_text().count('name = "ann"') == 1
