"""`build` end to end as the unprivileged test user: a Dockerfile corpus over busybox from the
test registry, then `run` of the built images; cache, errors, no partial images."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.cli_runner import ok
from tests.fixtures.podman import configure_podman

from tests import unpriv


def build(cli, context: Path, *args: str, env=None, timeout: float = 300, input=None):
    """`pydocklite build ARGS CONTEXT` as the test user."""
    kw = {"input": input} if input is not None else {}
    return cli("build", *args, str(context), env=env, timeout=timeout, **kw)


def write_tree(root: Path, files: dict) -> Path:
    """Files {relpath: text or (text, mode)}; directories made readable for the test user."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        mode = 0o644
        if isinstance(content, tuple):
            content, mode = content
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
        p.chmod(mode)
    for d, dirs, _ in os.walk(root):
        os.chmod(d, 0o755)
    return root


def data_dir(home: Path) -> Path:
    return home / ".local" / "share" / "pydocklite"


def stored_image(cli, tag: str) -> dict:
    """The image config JSON the store holds for `tag` (read directly, as root)."""
    db = json.loads((data_dir(cli.home) / "images.json").read_text())
    from registry.reference import Reference
    canon = str(Reference.parse(tag))
    iid = db["tags"][canon]
    return json.loads((data_dir(cli.home) / "blobs" / "sha256" / iid[7:]).read_bytes())


def layer_members(cli, diff_id: str) -> list:
    import tarfile
    blob = data_dir(cli.home) / "layers" / "sha256" / diff_id[7:] / "blob"
    with tarfile.open(blob) as tf:
        return [m.name.rstrip("/") for m in tf.getmembers()]


def sh(cli, image: str, script: str, *flags: str):
    return ok(cli("run", "--rm", *flags, "--entrypoint", "/bin/sh", image, "-c", script))


def test_smoke_run_layer_has_only_the_change(cli, busybox):
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": f"FROM {busybox}\nRUN echo hello > /greeting\nCMD [\"cat\", \"/greeting\"]\n",
    })
    r = ok(build(cli, ctx, "-t", "smoke:1"))
    assert "Successfully tagged smoke:1" in r.stdout
    assert r.stdout.count("Step ") == 3 and " ---> Running in " in r.stdout
    r = ok(cli("run", "--rm", "smoke:1"))
    assert r.stdout == "hello\n"
    cfg = stored_image(cli, "smoke:1")
    assert layer_members(cli, cfg["rootfs"]["diff_ids"][-1]) == ["greeting"]
    assert ok(cli("ps", "-a", "-q")).stdout == ""
    # an image like any other: listed, inspected, removed
    r = ok(cli("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"))
    assert any(line.startswith("smoke:1 ") for line in r.stdout.splitlines())
    info = json.loads(ok(cli("image", "inspect", "smoke:1")).stdout)[0]
    assert info["Config"]["Cmd"] == ["cat", "/greeting"]
    assert len(info["RootFS"]["Layers"]) == 2
    r = ok(cli("history", "--no-trunc", "smoke:1"))
    assert "RUN /bin/sh -c echo hello > /greeting" in r.stdout, r.stdout
    assert 'CMD ["cat", "/greeting"]' in r.stdout
    assert "Deleted:" in ok(cli("rmi", "smoke:1")).stdout


CORPUS = r"""# syntax=docker/dockerfile:1
# escape=\
ARG BASE
ARG GREETING=hi
ARG UNUSED_GLOBAL=nope

# stage one: builds a file, deletes files of lower layers
FROM ${BASE} AS builder
ARG GREETING
ARG STAGE_ONLY=one
ENV APP_DIR=/opt/app
WORKDIR ${APP_DIR}/src
COPY src/ ./
RUN echo "$GREETING from $STAGE_ONLY in $(pwd)" > built.txt && \
    # a comment inside a continued line
    echo tmp > /tmp/scratch.txt
RUN rm /tmp/scratch.txt /bin/vi && echo "[$UNUSED_GLOBAL]" > /opt/app/unused.txt

FROM ${BASE}
ARG GREETING
ENV BASEDIR=/srv FOO=bar
ARG FOO=from-arg
ENV FULL=${BASEDIR}/data
ENV OTHER another value
WORKDIR $FULL
RUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd && \
    echo 'app:x:2345:' >> /etc/group && mkdir -p /home/app && chown app:app /home/app
COPY --from=builder /opt/app/src/built.txt /opt/app/unused.txt /from-builder/
COPY --chown=app:app --chmod=640 conf/*.conf /etc/app/
COPY . /ctx/
ADD files.tar.gz /unpacked/
COPY ["with space.txt", "/spaced/"]
RUN echo "stage2 [$STAGE_ONLY] ${GREETING:-none} ${MISSING:-dflt} ${FOO:+set} $FOO" > /stage2.txt
RUN <<EOF
echo "heredoc run $FOO" > /heredoc-run.txt
EOF
COPY <<"RAW" <<COOKED /heredocs/
raw $FOO
RAW
cooked $FOO ${APP_DIR:-no-app-dir}
COOKED
USER app
RUN id -u > /home/app/uid && id -g >> /home/app/uid && whoami >> /home/app/uid
USER root
SHELL ["/bin/sh", "-ec"]
RUN echo "shell=$0" > /shell.txt
LABEL org.example.a=b "org.example.c d"="e f"
EXPOSE 8080 9090/udp
VOLUME ["/data"]
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD wget -q -O- http://localhost/ || exit 1
ONBUILD RUN echo triggered > /onbuild.txt
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /stage2.txt"]
"""


def corpus_context(root: Path, busybox: str) -> Path:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"from the tarball\n"
        ti = tarfile.TarInfo("data/x.txt")
        ti.size, ti.mode = len(data), 0o644
        tf.addfile(ti, io.BytesIO(data))
    return write_tree(root, {
        "Dockerfile": CORPUS,
        ".dockerignore": "# comment\n*.md\n!KEEP.md\nsecret/\n**/*.tmp\nDockerfile\n",
        "README.md": "ignored\n",
        "KEEP.md": "kept\n",
        "secret/key": "s3cret\n",
        "a/b/c.tmp": "tmp\n",
        "a/b/real.txt": "real\n",
        "src/main.c": "int main(){return 0;}\n",
        "src/lib/util.h": "#define X 1\n",
        "conf/one.conf": "one\n",
        "conf/two.conf": "two\n",
        "conf/skip.txt": "no\n",
        "with space.txt": "spaced\n",
        "files.tar.gz": buf.getvalue(),
    })


def test_corpus_every_instruction(cli, busybox):
    ctx = corpus_context(cli.home / "ctx", busybox)
    t0 = time.monotonic()
    r = ok(build(cli, ctx, "-t", "corpus:1", "-t", "corpus:2", "--build-arg", f"BASE={busybox}",
                 "--build-arg", "GREETING=hello", "--label", "from.flag=yes"))
    cold = time.monotonic() - t0
    out = r.stdout
    assert "Successfully tagged corpus:1" in out and "Successfully tagged corpus:2" in out
    assert out.count(" ---> Running in ") == 7      # every RUN ran

    # files
    r = sh(cli, "corpus:1", "cat /from-builder/built.txt /from-builder/unused.txt; "
           "ls /from-builder; pwd; "
           "cat /stage2.txt /shell.txt /home/app/uid /unpacked/data/x.txt; "
           "ls -n /etc/app; cat '/spaced/with space.txt'; "
           "cd /ctx && find . | sort")
    lines = r.stdout.splitlines()
    assert lines[0] == "hello from one in /opt/app/src"         # ARG scoping + WORKDIR
    assert lines[1] == "[]"                                     # global ARG not redeclared
    assert lines[2:4] == ["built.txt", "unused.txt"]            # COPY --from, several sources
    assert lines[4] == "/srv/data"                              # ENV expansion in WORKDIR
    assert lines[5] == "stage2 [] hello dflt set bar"
    assert lines[6] == "shell=/bin/sh"
    assert lines[7:10] == ["1234", "2345", "app"]               # USER name from /etc/passwd
    assert lines[10] == "from the tarball"                      # ADD tar auto-extraction
    perms = [x.split() for x in lines[11:] if x.startswith("-rw")]
    assert sorted(p[-1] for p in perms) == ["one.conf", "two.conf"]
    assert all(p[0] == "-rw-r-----" and p[2:4] == ["1234", "2345"] for p in perms)
    assert "spaced" in lines
    tree = lines[lines.index("spaced") + 1:]
    assert tree == [".", "./.dockerignore", "./KEEP.md", "./a", "./a/b", "./a/b/real.txt", "./conf",
                    "./conf/one.conf", "./conf/skip.txt", "./conf/two.conf", "./files.tar.gz",
                    "./src", "./src/lib", "./src/lib/util.h", "./src/main.c", "./with space.txt"]

    r = sh(cli, "corpus:1", "cat /heredoc-run.txt /heredocs/RAW /heredocs/COOKED")
    assert r.stdout == "heredoc run bar\nraw $FOO\ncooked bar no-app-dir\n"

    # config
    cfg = stored_image(cli, "corpus:1")
    c = cfg["config"]
    env = dict(e.split("=", 1) for e in c["Env"])
    assert env["FULL"] == "/srv/data" and env["FOO"] == "bar"
    assert env["OTHER"] == "another value" and "GREETING" not in env
    assert c["WorkingDir"] == "/srv/data" and c["User"] == "root"
    assert c["Entrypoint"] == ["/bin/sh", "-c"] and c["Cmd"] == ["cat /stage2.txt"]
    assert c["Labels"] == {"org.example.a": "b", "org.example.c d": "e f", "from.flag": "yes"}
    assert c["ExposedPorts"] == {"8080/tcp": {}, "9090/udp": {}}
    assert c["Volumes"] == {"/data": {}} and c["StopSignal"] == "SIGINT"
    assert c["Healthcheck"]["Test"][0] == "CMD-SHELL" and c["Healthcheck"]["Retries"] == 2
    assert c["Healthcheck"]["Interval"] == 5_000_000_000
    assert c["Shell"] == ["/bin/sh", "-ec"] and c["OnBuild"] == ["RUN echo triggered > /onbuild.txt"]
    hist = cfg["history"]
    assert len([h for h in hist if not h.get("empty_layer")]) == len(cfg["rootfs"]["diff_ids"])
    assert any(h["created_by"].startswith("RUN /bin/sh -c echo 'app:x") for h in hist)
    r = ok(cli("run", "--rm", "corpus:1"))
    assert r.stdout == "stage2 [] hello dflt set bar\n"

    # an unchanged rebuild: every step cached, same image, fast
    t0 = time.monotonic()
    r = ok(build(cli, ctx, "-t", "corpus:1", "--build-arg", f"BASE={busybox}",
                 "--build-arg", "GREETING=hello", "--label", "from.flag=yes"))
    cached = time.monotonic() - t0
    n_steps = r.stdout.count("Step ")
    assert r.stdout.count(" ---> CACHED") == n_steps - 2      # all but the two FROMs
    assert " ---> Running in" not in r.stdout
    assert stored_image(cli, "corpus:1") == cfg
    print(f"corpus build: cold {cold:.2f}s, cached {cached:.2f}s")

    # --target: the first stage alone, from the cache; its RUN deleted lower-layer files
    r = ok(build(cli, ctx, "--target", "builder", "-t", "corpus-builder",
                 "--build-arg", f"BASE={busybox}", "--build-arg", "GREETING=hello"))
    assert r.stdout.count("Step ") == 8 and r.stdout.count(" ---> CACHED") == 7
    r = sh(cli, "corpus-builder", "ls /bin/vi 2>&1; ls -A /tmp; echo end; cat /opt/app/unused.txt")
    assert "No such file" in r.stdout.splitlines()[0]
    assert r.stdout.splitlines()[1:] == ["end", "[]"]
    bcfg = stored_image(cli, "corpus-builder")
    assert set(layer_members(cli, bcfg["rootfs"]["diff_ids"][-1])) >= {"bin/.wh.vi",
                                                                       "tmp/.wh.scratch.txt"}

    # one file changed: stage 1 rebuilds from its COPY, stage 2 from the COPY --from
    (ctx / "src" / "main.c").write_text("int main(){return 1;}\n")
    r = ok(build(cli, ctx, "-t", "corpus:1", "--build-arg", f"BASE={busybox}",
                 "--build-arg", "GREETING=hello"))
    steps = r.stdout.split("Step ")[1:]
    titles = [s.split("\n", 1)[0].split(" : ", 1)[1] for s in steps]
    cached_titles = [t for t, s in zip(titles, steps) if " ---> CACHED" in s]
    assert cached_titles[:4] == ["ARG GREETING", "ARG STAGE_ONLY=one", "ENV APP_DIR=/opt/app",
                                 "WORKDIR ${APP_DIR}/src"]
    copy_src = next(s for s in steps if s.split("\n", 1)[0].endswith("COPY src/ ./"))
    assert " ---> CACHED" not in copy_src
    assert "Running in" in next(s for s in steps if "built.txt" in s.split("\n", 1)[0])
    # built.txt came out the same: COPY --from is keyed by content, so it stays cached
    copy_from = next(s for s in steps if "COPY --from=builder" in s.split("\n", 1)[0])
    assert " ---> CACHED" in copy_from
    first_run_2 = next(s for s in steps if "RUN echo 'app:x" in s.split("\n", 1)[0])
    assert " ---> CACHED" in first_run_2
    i_ctx = titles.index("COPY . /ctx/")                       # the context copy changed
    assert all(" ---> CACHED" not in s for s in steps[i_ctx:])
    assert "Running in" in steps[i_ctx + 3]


def test_failing_run_leaves_no_image(cli, busybox):
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": f"FROM {busybox}\nRUN echo ok > /a\n"
                      "RUN echo before-the-failure && echo to-stderr >&2 && exit 3\nCMD true\n",
    })
    before = json.loads((data_dir(cli.home) / "images.json").read_text())
    r = build(cli, ctx, "-t", "broken:1")
    assert r.returncode == 1, r
    assert "before-the-failure" in r.stdout and "to-stderr" in r.stdout
    assert "returned a non-zero code: 3" in r.stderr and "Dockerfile:3" in r.stderr
    assert "Successfully" not in r.stdout
    after = json.loads((data_dir(cli.home) / "images.json").read_text())
    assert after == before                        # no image, no tag
    assert ok(cli("ps", "-a", "-q")).stdout == ""
    snaps = [p.name for p in (data_dir(cli.home) / "snapshots").iterdir()
             if p.is_dir() and p.name != "trees"]
    assert snaps == []
    # -q: nothing but the error output (the step's output is shown on failure)
    r = build(cli, ctx, "-q", "-t", "broken:1")
    assert r.returncode == 1 and r.stdout == "" and "before-the-failure" in r.stderr


def test_dockerfile_errors_name_file_and_line(cli, busybox):
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": f"FROM {busybox}\n# comment\nRUN true && \\\n  true\nCOPPY a b\n",
        "custom.Dockerfile": f"FROM {busybox}\nCOPY ../outside /x\n",
        "nofrom.Dockerfile": "RUN true\n",
        "nouser.Dockerfile": f"FROM {busybox}\nUSER ghost\nRUN true\n",
    })
    r = build(cli, ctx)
    assert r.returncode == 1
    assert "Dockerfile:5: unknown instruction: COPPY" in r.stderr, r.stderr
    r = build(cli, ctx, "-f", str(ctx / "custom.Dockerfile"))
    assert r.returncode == 1 and "outside the build context" in r.stderr, r.stderr
    r = build(cli, ctx, "-f", "nofrom.Dockerfile")
    assert r.returncode == 1 and "nofrom.Dockerfile:1" in r.stderr, r.stderr
    r = build(cli, ctx, "-f", "nouser.Dockerfile")
    assert r.returncode == 1 and "nouser.Dockerfile:3: RUN" in r.stderr, r.stderr
    assert "unable to find user ghost" in r.stderr
    assert ok(cli("ps", "-a", "-q")).stdout == ""
    r = build(cli, ctx, "-f", "custom.Dockerfile", "--target", "nosuch")
    assert r.returncode != 0 and "nosuch" in r.stderr


def test_scratch_onbuild_quiet_and_reproducible(cli, busybox, registry):
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": "FROM scratch\nCOPY hello.txt /dir/\nENV A=1\nCMD [\"/x\"]\n",
        "run.Dockerfile": f"FROM {busybox}\nRUN mkdir /made && echo x > /made/file\n"
                          f"ADD {registry.url}/v2/ /fetched/v2.json\n",
        "base.Dockerfile": f"FROM {busybox}\nONBUILD COPY hello.txt /from-trigger.txt\n"
                           "ONBUILD RUN echo ran > /trigger-ran\n",
        "child.Dockerfile": "FROM onbase\nRUN cat /trigger-ran /from-trigger.txt\n",
        "hello.txt": "hello\n",
    })
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    r1 = ok(build(cli, ctx, "-q", "--no-cache", env=env))
    iid = cli.home / "iid"
    r2 = ok(build(cli, ctx, "--no-cache", "-t", "scratchy", "-f", "-", "--iidfile", str(iid),
                  env=env, input=(ctx / "Dockerfile").read_text()))
    assert r1.stdout.startswith("sha256:")                # -q: the id only
    assert iid.read_text() == r1.stdout.strip()           # same inputs, same id
    cfg = stored_image(cli, "scratchy")
    assert len(cfg["rootfs"]["diff_ids"]) == 1 and cfg["created"] == "2023-11-14T22:13:20Z"
    assert layer_members(cli, cfg["rootfs"]["diff_ids"][0]) == ["dir", "dir/hello.txt"]
    # a RUN's layer too: file times clamped to SOURCE_DATE_EPOCH; ADD of a URL
    r1 = ok(build(cli, ctx, "-q", "--no-cache", "-f", "run.Dockerfile", env=env))
    r2 = ok(build(cli, ctx, "-q", "--no-cache", "-f", "run.Dockerfile", "-t", "runny", env=env))
    assert r1.stdout == r2.stdout
    r = sh(cli, "runny", "cat /fetched/v2.json; echo; stat -c '%Y %a' /made/file /fetched/v2.json")
    assert r.stdout.splitlines() == ["{}", "1700000000 644", "1700000000 600"]
    ok(build(cli, ctx, "-f", "base.Dockerfile", "-t", "onbase"))
    r = ok(build(cli, ctx, "-f", "child.Dockerfile", "-t", "onchild"))
    assert "# Executing 2 build triggers" in r.stdout and "ran\nhello\n" in r.stdout
    assert stored_image(cli, "onchild")["config"].get("OnBuild") is None


@pytest.mark.slow
def test_apt_get_install_on_debian(cli, debian_image):
    """Root inside the build without root outside: apt-get (which drops to the _apt user and
    chowns its files) installs a package; the mirror is reached with --network host."""
    ok(cli("pull", "-q", debian_image))
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": f"FROM {debian_image}\n"
                      "RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends "
                      "hello >/dev/null && rm -rf /var/lib/apt/lists/*\n"
                      "CMD [\"hello\"]\n",
    })
    t0 = time.monotonic()
    r = ok(build(cli, ctx, "--network", "host", "-t", "deb-hello", timeout=600))
    print(f"debian apt-get build: {time.monotonic() - t0:.1f}s")
    assert ok(cli("run", "--rm", "deb-hello")).stdout == "Hello, world!\n"
    r = ok(cli("run", "--rm", "deb-hello", "stat", "-c", "%U:%G %a", "/var/cache/apt/archives/partial"))
    assert r.stdout.strip() in ("_apt:root 700", "_apt:root 755")   # owner kept from the RUN


@pytest.mark.slow
def test_many_files_cold_cached_and_one_touched(cli, debian_image):
    """bench/build's shape, small: 5,000 files copied, a RUN over them; the cached rebuild
    must be all CACHED (how much faster it is: bench/build.py); touching one file re-runs
    from the COPY."""
    ok(cli("pull", "-q", debian_image))
    files = {f"src/d{i // 100}/f{i}.c": f"int f{i}(void) {{ return {i}; }}\n" for i in range(5000)}
    files["Dockerfile"] = (f"FROM {debian_image}\nWORKDIR /build\nCOPY src/ src/\n"
                           "RUN find src -name '*.c' | wc -l > count && cat src/d*/f*.c | wc -l "
                           ">> count\nCMD [\"cat\", \"/build/count\"]\n")
    ctx = write_tree(cli.home / "ctx", files)
    times = {}
    for label in ("cold", "cached", "touched"):
        if label == "touched":
            (ctx / "src/d7/f700.c").write_text("int f700(void) { return -1; }\n")
        t0 = time.monotonic()
        r = ok(build(cli, ctx, "-t", "many"))
        times[label] = time.monotonic() - t0
        if label == "cached":
            assert r.stdout.count(" ---> CACHED") == 4
        if label == "touched":
            assert r.stdout.count(" ---> CACHED") == 1 and "Running in" in r.stdout
    print("5000 files: " + ", ".join(f"{k} {v:.2f}s" for k, v in times.items()))
    assert ok(cli("run", "--rm", "many")).stdout == "5000\n5000\n"


def test_network_none_and_pull(cli, busybox):
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": f"FROM {busybox}\nRUN ls /sys/class/net > /nets\n"
                      "RUN --network=host ls /sys/class/net > /hostnets\n",
    })
    r = ok(build(cli, ctx, "--network", "none", "--allow", "network.host", "--pull",
                 "-t", "nets"))
    assert "Pulling from 127.0.0.1" in r.stdout                 # --pull: asked the registry
    r = sh(cli, "nets", "cat /nets; echo --; cat /hostnets")
    nets, host = r.stdout.split("--\n")
    assert nets.split() == ["lo"]
    assert set(host.split()) == set(os.listdir("/sys/class/net"))   # RUN --network=host


def test_run_mounts_cache_bind_tmpfs(cli, busybox):
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": f"FROM {busybox}\n"
                      "RUN --mount=type=cache,target=/cache echo run1 >> /cache/log\n"
                      "RUN --mount=type=cache,target=/cache --mount=type=bind,source=data,"
                      "target=/ctxdata --mount=type=tmpfs,target=/scratch "
                      "cat /ctxdata/in.txt /cache/log > /seen && touch /scratch/x && "
                      "! touch /ctxdata/denied 2>/dev/null\n",
        "data/in.txt": "input\n",
    })
    ok(build(cli, ctx, "-t", "mounts"))
    r = sh(cli, "mounts", "cat /seen; ls -A /cache /scratch /ctxdata 2>&1 | grep -v '^/' | wc -w")
    assert r.stdout == "input\nrun1\n0\n"          # the cache's contents stay out of the image
    cfg = stored_image(cli, "mounts")
    assert layer_members(cli, cfg["rootfs"]["diff_ids"][-2]) in ([], ["cache"])
    # the cache persists: a --no-cache rebuild appends to it
    ok(build(cli, ctx, "--no-cache", "-t", "mounts"))
    assert sh(cli, "mounts", "cat /seen").stdout == "input\nrun1\nrun1\n"
    bad = write_tree(cli.home / "bad", {"Dockerfile": f"FROM {busybox}\n"
                                        "RUN --mount=type=secret,id=x true\n"})
    r = build(cli, bad)
    assert r.returncode == 1 and "Dockerfile:2" in r.stderr and "type=secret" in r.stderr


NOBODY = 65534


class _Nobody:
    """pydocklite as `nobody`: a user without an /etc/subuid range, so containers get the
    single-id map (root inside = that user) — what a host without subordinate ids gives."""

    def __init__(self, home: Path, session) -> None:
        import shutil
        self.session = session      # its zipapp (extracted into HOME/.shiv), or the checkout
        shutil.rmtree(home, ignore_errors=True)
        (home / "run").mkdir(parents=True)
        for p in (home, home / "run"):
            os.chown(p, NOBODY, NOBODY)
            p.chmod(0o700)
        self.home = home

    def env(self) -> dict:
        h = str(self.home)
        return {"HOME": h, "XDG_DATA_HOME": f"{h}/.local/share", "XDG_CONFIG_HOME": f"{h}/.config",
                "XDG_RUNTIME_DIR": f"{h}/run", "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
                **({} if self.session.drop_pythonpath else
                   {"PYTHONPATH": f"{unpriv.REPO}:{unpriv.site_packages()}"})}

    def __call__(self, *args: str, timeout: float = 600):
        cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
               *self.session.prefix, *args]
        return subprocess.run(cmd, env=self.env(), cwd=str(self.home), capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.slow
def test_apt_get_with_single_id_map(registry, debian_image, pdl_session):
    if os.geteuid() != 0:
        pytest.skip("needs root to run as the user nobody")
    if any(line.split(":")[0] in ("nobody", str(NOBODY)) for line in
           Path("/etc/subuid").read_text().splitlines()):
        pytest.skip("nobody has a subordinate id range here: no single-id map to test")
    nb = _Nobody(pdl_session.root / "homes" / f"nobody-{os.getpid()}", pdl_session)
    try:
        ok(nb("pull", "-q", debian_image))
        ctx = nb.home / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            f"FROM {debian_image}\n"
            "RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends hello "
            ">/dev/null && rm -rf /var/lib/apt/lists/* && chown 42:42 /tmp && id -u\n")
        os.chmod(ctx, 0o755)
        r = ok(nb("build", "--network", "host", "-t", "single-hello", str(ctx)))
        assert "single-id" in r.stdout and "no-ops" in r.stdout     # said so in the output
        r = ok(nb("run", "--rm", "single-hello", "hello"))
        assert r.stdout == "Hello, world!\n"
    finally:
        subprocess.run(["pkill", "-KILL", "-f", str(nb.home)], check=False)
        import shutil
        shutil.rmtree(nb.home, ignore_errors=True)


def test_only_needed_stages_are_built(cli, busybox):
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": f"ARG IMG={busybox}\n"
                      "FROM $IMG AS unused\nRUN exit 7\n"
                      "FROM ${IMG} AS base\nRUN echo b > /b\n"
                      "FROM base AS final\nCOPY --from=1 /b /c\nRUN cat /b /c\n",
    })
    r = ok(build(cli, ctx, "-t", "needed"))
    assert "exit 7" not in r.stdout and "Step 1/5 : FROM ${IMG} AS base" in r.stdout
    assert "b\nb\n" in r.stdout
    r = build(cli, ctx, "--target", "unused")
    assert r.returncode == 1 and "returned a non-zero code: 7" in r.stderr


def test_arg_details(cli, busybox):
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": f"ARG NOVALUE\nARG IMG={busybox}\n"
                      "FROM --platform=$BUILDPLATFORM $IMG\n"
                      "ARG NOVALUE\nARG TARGETARCH\nARG OWNER=7:8\n"
                      "COPY --chown=$OWNER --chmod=${MODE:-600} f.txt /f.txt\n"
                      "RUN echo \"[$NOVALUE] $TARGETARCH [$TARGETOS] $HTTP_PROXY\" > /args && "
                      "stat -c '%u:%g %a' /f.txt >> /args\n",
        "f.txt": "f\n",
    })
    r = ok(build(cli, ctx, "-t", "args", "--build-arg", "HTTP_PROXY=http://proxy.invalid:3128",
                 "--build-arg", "NOT_DECLARED=1"))
    assert "[Warning] One or more build-args ['NOT_DECLARED'] were not consumed" in r.stdout
    import platform
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    assert sh(cli, "args", "cat /args").stdout == \
        f"[] {arch} [] http://proxy.invalid:3128\n7:8 600\n"
    cfg = stored_image(cli, "args")
    assert "proxy" not in json.dumps(cfg)           # proxy args stay out of the image


@pytest.mark.parametrize("driver", ["fuse", "vfs"])
def test_other_storage_drivers(cli, busybox, driver):
    """RUN commits its changes (new files, deletions) whatever backs the container's rootfs."""
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": f"FROM {busybox}\nRUN mkdir -p /d && echo new > /d/f && rm /bin/vi "
                      "&& chmod 700 /d && chown 1:2 /d/f\n",
    })
    env = {"PYDOCKLITE_STORAGE_DRIVER": driver}
    ok(build(cli, ctx, "-t", f"drv-{driver}", env=env))
    cfg = stored_image(cli, f"drv-{driver}")
    members = set(layer_members(cli, cfg["rootfs"]["diff_ids"][-1]))
    assert members - {"bin"} == {"bin/.wh.vi", "d", "d/f"}     # no mount points (etc/hosts)
    r = sh(cli, f"drv-{driver}", "cat /d/f; stat -c '%a %u:%g' /d /d/f; ls /bin/vi 2>&1; true")
    assert r.stdout.splitlines()[:3] == ["new", "700 0:0", "644 1:2"]
    assert "No such file" in r.stdout


def test_build_push_pull_run(cli, busybox, registry):
    """Build, push to the test registry, remove locally, pull back, run: same files, config."""
    ctx = write_tree(cli.home / "ctx", {
        "Dockerfile": f"FROM {busybox}\nCOPY app.sh /app.sh\nRUN chmod 755 /app.sh && "
                      "mkdir /data && echo built > /data/x\nENV MODE=prod\n"
                      "ENTRYPOINT [\"/app.sh\"]\n",
        "app.sh": "#!/bin/sh\necho \"$MODE $(cat /data/x)\"\n",
    })
    target = f"{registry.host}/built/app:1"
    ok(build(cli, ctx, "-t", target))
    before = stored_image(cli, target)
    r = ok(cli("push", target))
    assert r.stdout.count(": Pushed") + r.stdout.count("Mounted from") + \
        r.stdout.count("already exists") == 3
    ok(cli("rmi", target))
    ok(cli("pull", target))
    assert stored_image(cli, target) == before       # same config, so the same image id
    assert ok(cli("run", "--rm", target)).stdout == "prod built\n"
    # and Podman runs what we built
    import shutil
    if not shutil.which("podman"):
        pytest.skip("podman is not installed: the interoperability half is not checked")
    pod_home = cli.home / "podman"
    configure_podman(pod_home)
    env = unpriv.user_env(pod_home)
    env["XDG_RUNTIME_DIR"] = str(cli.home / "run")
    r = unpriv.run_as_user(["podman", "run", "--rm", "--tls-verify=false", "--network", "none",
                            target], pod_home, env=env, timeout=180)
    try:
        assert r.returncode == 0, r.stderr
        assert r.stdout == "prod built\n"
    finally:
        unpriv.run_as_user(["podman", "system", "reset", "--force"], pod_home, env=env,
                           timeout=120)
