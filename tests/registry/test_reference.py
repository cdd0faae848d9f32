from __future__ import annotations

import pytest

from registry.errors import InvalidReferenceError, RegistryError
from registry.reference import Reference, split_domain, validate_digest

HEX = "a" * 64
D = "sha256:" + HEX


@pytest.mark.parametrize("s, canonical, familiar, repository", [
    ("nginx", "docker.io/library/nginx:latest", "nginx:latest", "docker.io/library/nginx"),
    ("nginx:1.27", "docker.io/library/nginx:1.27", "nginx:1.27", "docker.io/library/nginx"),
    ("library/nginx", "docker.io/library/nginx:latest", "nginx:latest", "docker.io/library/nginx"),
    ("docker.io/nginx", "docker.io/library/nginx:latest", "nginx:latest", "docker.io/library/nginx"),
    ("index.docker.io/library/nginx", "docker.io/library/nginx:latest", "nginx:latest",
     "docker.io/library/nginx"),
    ("user/app:1.0", "docker.io/user/app:1.0", "user/app:1.0", "docker.io/user/app"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest", "localhost/x"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x"),
    ("quay.io/org/sub/img:v1.2_3-rc", "quay.io/org/sub/img:v1.2_3-rc", "quay.io/org/sub/img:v1.2_3-rc",
     "quay.io/org/sub/img"),
    ("[::1]:5000/img", "[::1]:5000/img:latest", "[::1]:5000/img:latest", "[::1]:5000/img"),
    ("a__b/c.d-e", "docker.io/a__b/c.d-e:latest", "a__b/c.d-e:latest", "docker.io/a__b/c.d-e"),
])
def test_normalisation(s, canonical, familiar, repository):
    r = Reference.parse(s)
    assert str(r) == canonical
    assert r.familiar == familiar
    assert r.repository == repository
    assert Reference.parse(str(r)) == r  # canonical form round-trips


def test_digest_only_and_tag_plus_digest():
    r = Reference.parse(f"host:5000/repo@{D}")
    assert (r.domain, r.path, r.tag, r.digest) == ("host:5000", "repo", None, D)
    assert r.reference == D and str(r) == f"host:5000/repo@{D}"
    both = Reference.parse(f"nginx:1.27@{D}")
    assert both.tag == "1.27" and both.digest == D
    assert both.reference == D, "the digest wins when pulling"
    assert str(both) == f"docker.io/library/nginx:1.27@{D}"
    assert both.familiar == f"nginx:1.27@{D}"


def test_with_digest_tag_path():
    r = Reference.parse("nginx")
    assert r.with_digest(D).reference == D
    assert r.with_tag("2").tag == "2"
    assert r.with_path("library/other").repository == "docker.io/library/other"
    with pytest.raises(InvalidReferenceError):
        r.with_digest("sha256:short")


def test_split_domain_rules():
    assert split_domain("foo/bar") == ("docker.io", "foo/bar")
    assert split_domain("foo.com/bar") == ("foo.com", "bar")
    assert split_domain("foo:1/bar") == ("foo:1", "bar")
    assert split_domain("localhost/bar") == ("localhost", "bar")
    assert split_domain("Foo/bar") == ("Foo", "bar")  # uppercase first part = a host, as Docker


@pytest.mark.parametrize("bad, why", [
    ("", "empty"),
    ("Nginx", "lowercase"),
    ("nginx:", "tag"),
    ("nginx:-bad", "tag"),
    ("nginx:" + "t" * 129, "tag"),
    ("nginx@sha256:abc", "digest"),
    ("nginx@md5:" + "a" * 32, "algorithm"),
    ("nginx@sha256:" + "A" * 64, "digest"),
    ("a//b", "repository name"),
    ("-a/b", "repository name"),
    ("a/b_", "repository name"),
    ("foo bar", "whitespace"),
    (HEX, "hexadecimal"),
    ("host:5000/" + "a" * 300, "longer"),
    ("bad_host.com:5000/x", "registry host"),
])
def test_invalid(bad, why):
    with pytest.raises(InvalidReferenceError) as e:
        Reference.parse(bad)
    assert why in str(e.value)
    assert isinstance(e.value, RegistryError) and isinstance(e.value, ValueError)


def test_validate_digest():
    assert validate_digest(D) == D
    assert validate_digest("sha512:" + "b" * 128)
    with pytest.raises(InvalidReferenceError):
        validate_digest("sha256:" + "a" * 63)
