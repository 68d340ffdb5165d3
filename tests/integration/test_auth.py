"""Users, roles, tokens and the audit log through canopy-managerd and the
CLI (issue 9 items 3 and 4): no call but Login works without a valid token
(none, forged, expired, revoked by a password change or a deleted user);
each built-in role and a custom one can call what it should and gets
PERMISSION_DENIED naming the privilege otherwise, on the objects it was
granted (a NoAccess grant on one VM overrides the cluster's); repeated
failed logins lock the user; denied and changing calls are in the audit
log, and `canopy audit verify` catches an edited line of the file."""
import os
import time

import grpc
import pytest

from canopy_testlib import etcd as etcdlib
from canopy_testlib import manager as mgrlib
from canopy_testlib import protos


@pytest.fixture(autouse=True)
def _need_binaries():
    if not os.path.exists(mgrlib.binary("bin/canopy-managerd")):
        pytest.skip("SKIP: canopy-managerd not built: run make")
    if not (os.path.exists(etcdlib.ETCD) and os.path.exists(etcdlib.ETCDCTL)):
        pytest.skip("SKIP (needs etcd): %s missing (Debian package "
                    "etcd-server)" % etcdlib.ETCD)


def Au():
    return protos.load("canopy_auth")


A = mgrlib.api


def _ser(m):
    return m.SerializeToString()


def call(ch, svc, method, req, resp):
    return ch.unary_unary("/canopy.v1.%s/%s" % (svc, method),
                          request_serializer=_ser,
                          response_deserializer=resp.FromString)(
                              req, timeout=10)


def code_of(fn):
    with pytest.raises(grpc.RpcError) as e:
        fn()
    return e.value.code(), e.value.details()


def cluster(ch):
    return call(ch, "ClusterService", "GetCluster", A().GetClusterRequest(),
                A().Cluster)


def start_vm(ch, name):
    return call(ch, "VmService", "StartVm", A().VmPowerRequest(name=name),
                A().Task)


def add_user(m, name, pw, role=None, obj="cluster"):
    a = Au()
    call(m.channel, "UserService", "AddUser",
         a.AddUserRequest(name=name, password=pw), a.UserResponse)
    if role:
        grant(m, obj, name, role)


def grant(m, obj, user, role):
    a = Au()
    call(m.channel, "RoleService", "Grant", a.GrantRequest(
        permission=a.Permission(object=obj, user=user, role=role)),
        a.Permission)


def as_user(m, name, pw):
    return m.pki.channel(m.addr, token=m.pki.login(m.addr, name, pw))


@pytest.fixture
def mgr(etcd, tmp_path):
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1",
                       extra=["--lockout-failures", "3",
                              "--lockout-seconds", "3"])
    try:
        m.start().wait_leader()
        yield m
    finally:
        m.close()


def test_no_call_without_a_valid_token(mgr):
    bare = mgr.pki.channel(mgr.addr, token=None)
    code, msg = code_of(lambda: cluster(bare))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "log in" in msg
    forged = mgr.pki.token(mgr.addr)
    forged = forged[:4] + ("x" if forged[4] != "x" else "y") + forged[5:]
    code, msg = code_of(lambda: cluster(
        mgr.pki.channel(mgr.addr, token=forged)))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "not valid" in msg
    code, _ = code_of(lambda: cluster(
        mgr.pki.channel(mgr.addr, token="cn1:admin:0:99999999999:00:00")))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    # Every method of the API is refused the same way (the table of
    # methods is the manager's; Login is the one open door).
    for svc, meth, req in (("VmService", "ListVms", A().ListVmsRequest()),
                           ("UserService", "ListUsers",
                            Au().ListUsersRequest()),
                           ("AuditService", "ListAudit",
                            Au().ListAuditRequest())):
        code, _ = code_of(lambda: call(bare, svc, meth, req, A().Cluster))
        assert code == grpc.StatusCode.UNAUTHENTICATED, meth
    assert cluster(mgr.channel).leader == "m1"


def test_roles_allow_exactly_their_privileges(mgr):
    add_user(mgr, "ro", "readonly-pw", "ReadOnly")
    add_user(mgr, "op", "operator-pw", "Operator")
    add_user(mgr, "vmop", "vm-only-pw", "Operator", "vm/web1")
    add_user(mgr, "boss", "boss-pw-123", "Administrator")
    grant(mgr, "vm/secret", "boss", "NoAccess")
    ro = as_user(mgr, "ro", "readonly-pw")
    op = as_user(mgr, "op", "operator-pw")
    vmop = as_user(mgr, "vmop", "vm-only-pw")
    boss = as_user(mgr, "boss", "boss-pw-123")
    assert cluster(ro).leader == "m1"
    code, msg = code_of(lambda: start_vm(ro, "web1"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "vm.power" in msg and "ro" in msg and "vm/web1" in msg
    # Allowed calls get past the gate: the VM does not exist.
    assert code_of(lambda: start_vm(op, "web1"))[0] == \
        grpc.StatusCode.NOT_FOUND
    code, msg = code_of(lambda: call(
        op, "VmService", "DeleteVm", A().DeleteVmRequest(name="web1"),
        A().Task))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "vm.delete" in msg
    code, msg = code_of(lambda: call(
        op, "UserService", "AddUser",
        Au().AddUserRequest(name="eve", password="eve-password"),
        Au().UserResponse))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "user.manage" in msg
    # A grant on one VM: that VM only, nothing on the cluster.
    assert code_of(lambda: start_vm(vmop, "web1"))[0] == \
        grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: start_vm(vmop, "web2"))[0] == \
        grpc.StatusCode.PERMISSION_DENIED
    code, msg = code_of(lambda: cluster(vmop))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "system.read" in msg
    # NoAccess on one VM overrides Administrator on the cluster.
    assert code_of(lambda: start_vm(boss, "web1"))[0] == \
        grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: start_vm(boss, "secret"))[0] == \
        grpc.StatusCode.PERMISSION_DENIED


def test_custom_role(mgr):
    a = Au()
    code, msg = code_of(lambda: call(
        mgr.channel, "RoleService", "CreateRole", a.CreateRoleRequest(
            role=a.Role(name="bad", privileges=["vm.fly"])), a.Role))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "vm.fly" in msg
    call(mgr.channel, "RoleService", "CreateRole", a.CreateRoleRequest(
        role=a.Role(name="PowerOnly", privileges=["vm.power"])), a.Role)
    add_user(mgr, "pat", "pat-password", "PowerOnly")
    pat = as_user(mgr, "pat", "pat-password")
    assert code_of(lambda: start_vm(pat, "x"))[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: cluster(pat))[0] == \
        grpc.StatusCode.PERMISSION_DENIED
    code, _ = code_of(lambda: call(
        mgr.channel, "RoleService", "DeleteRole",
        a.DeleteRoleRequest(name="PowerOnly"), a.Role))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, _ = code_of(lambda: call(
        mgr.channel, "RoleService", "DeleteRole",
        a.DeleteRoleRequest(name="Administrator"), a.Role))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    roles = call(mgr.channel, "RoleService", "ListRoles",
                 a.ListRolesRequest(), a.ListRolesResponse).roles
    assert {r.name for r in roles} >= {"Administrator", "Operator",
                                       "ReadOnly", "NoAccess", "PowerOnly"}


def test_resolve_migration_needs_its_privilege(mgr):
    """ResolveMigration needs vm.migrate.resolve on the cluster: an
    Operator (vm.migrate) is refused, on the cluster or on the VM; a
    custom role holding vm.migrate.resolve on the cluster gets past the
    gate (the VM does not exist), one holding it on the VM alone does
    not."""
    a = Au()

    def resolve(ch):
        return call(ch, "VmService", "ResolveMigration",
                    A().ResolveMigrationRequest(
                        name="web1",
                        choice=A().ResolveMigrationRequest.CHOICE_POWER_OFF),
                    A().Task)
    add_user(mgr, "op", "operator-pw", "Operator")
    call(mgr.channel, "RoleService", "CreateRole", a.CreateRoleRequest(
        role=a.Role(name="Resolver", privileges=["vm.migrate.resolve"])),
        a.Role)
    add_user(mgr, "res", "resolver-pw", "Resolver")
    add_user(mgr, "vres", "vm-resolver-pw", "Resolver", "vm/web1")
    code, msg = code_of(lambda: resolve(as_user(mgr, "op", "operator-pw")))
    assert code == grpc.StatusCode.PERMISSION_DENIED, msg
    assert "vm.migrate.resolve" in msg, msg
    code, msg = code_of(lambda: resolve(as_user(mgr, "vres",
                                                 "vm-resolver-pw")))
    assert code == grpc.StatusCode.PERMISSION_DENIED, msg
    code, msg = code_of(lambda: resolve(as_user(mgr, "res", "resolver-pw")))
    assert code == grpc.StatusCode.NOT_FOUND, msg
    assert code_of(lambda: resolve(mgr.channel))[0] == \
        grpc.StatusCode.NOT_FOUND


def test_password_change_and_delete_revoke_tokens(mgr):
    a = Au()
    add_user(mgr, "op", "first-password", "Operator")
    old = as_user(mgr, "op", "first-password")
    assert cluster(old).leader == "m1"
    code, _ = code_of(lambda: call(old, "UserService", "SetPassword",
                                   a.SetPasswordRequest(
                                       name="op", password="second-password",
                                       old_password="wrong-password"),
                                   a.UserResponse))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    call(old, "UserService", "SetPassword", a.SetPasswordRequest(
        name="op", password="second-password",
        old_password="first-password"), a.UserResponse)
    code, msg = code_of(lambda: cluster(old))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "revoked" in msg
    new = as_user(mgr, "op", "second-password")
    assert cluster(new).leader == "m1"
    # op may not set another user's password.
    code, _ = code_of(lambda: call(new, "UserService", "SetPassword",
                                   a.SetPasswordRequest(
                                       name="admin", password="taken-over!"),
                                   a.UserResponse))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    call(mgr.channel, "UserService", "DeleteUser",
         a.DeleteUserRequest(name="op"), a.UserResponse)
    assert code_of(lambda: cluster(new))[0] == \
        grpc.StatusCode.UNAUTHENTICATED
    perms = call(mgr.channel, "RoleService", "ListPermissions",
                 a.ListPermissionsRequest(user="op"),
                 a.ListPermissionsResponse).permissions
    assert list(perms) == []


def test_failed_logins_lock_the_user(mgr):
    add_user(mgr, "ann", "ann-password", "ReadOnly")
    for _ in range(3):
        code, msg = code_of(lambda: mgr.pki.login(mgr.addr, "ann", "nope!!!!"))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "wrong user name or password" in msg
    code, msg = code_of(lambda: mgr.pki.login(mgr.addr, "ann",
                                              "ann-password"))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "locked" in msg
    # Unknown users get the same answer as a wrong password.
    code, msg = code_of(lambda: mgr.pki.login(mgr.addr, "nobody", "x" * 9))
    assert "wrong user name or password" in msg
    time.sleep(3.5)
    assert mgr.pki.login(mgr.addr, "ann", "ann-password")


def test_expired_token_refused(etcd, tmp_path):
    m = mgrlib.Manager(tmp_path, etcd.endpoints, "m1",
                       extra=["--token-ttl", "10"])
    try:
        m.start().wait_leader()
        tok = m.pki.login(m.addr)
        ch = m.pki.channel(m.addr, token=tok)
        assert cluster(ch).leader == "m1"
        time.sleep(10.5)
        code, msg = code_of(lambda: cluster(ch))
        assert code == grpc.StatusCode.UNAUTHENTICATED and "expired" in msg
    finally:
        m.close()


def test_audit_records_and_verify(mgr, tmp_path):
    a = Au()
    add_user(mgr, "ro", "readonly-pw", "ReadOnly")
    ro = as_user(mgr, "ro", "readonly-pw")
    code_of(lambda: start_vm(ro, "web1"))
    recs = call(mgr.channel, "AuditService", "ListAudit",
                a.ListAuditRequest(), a.ListAuditResponse).records
    denied = [r for r in recs if r.result == "PERMISSION_DENIED"]
    assert denied and denied[-1].user == "ro"
    assert denied[-1].method == "VmService/StartVm"
    assert denied[-1].object == "vm/web1"
    assert denied[-1].source.startswith("ipv4:127.0.0.1:")
    assert any(r.method == "UserService/AddUser" and r.result == "OK" and
               r.user == "admin" for r in recs)
    assert any(r.method == "AuthService/Login" and r.user == "ro"
               for r in recs)
    # Reads are not audited; passwords never are.
    assert not any(r.method == "ClusterService/GetCluster" for r in recs)
    only_ro = call(mgr.channel, "AuditService", "ListAudit",
                   a.ListAuditRequest(user="ro"),
                   a.ListAuditResponse).records
    assert only_ro and all(r.user == "ro" for r in only_ro)
    log = os.path.join(mgr.pki.state_dir, "audit-m1.log")
    text = open(log).read()
    assert "readonly-pw" not in text and "PERMISSION_DENIED" in text
    r = mgr.run_cli("audit", "verify")
    assert r.returncode == 0 and "verify" in r.stdout, r.stdout + r.stderr
    r = mgr.run_cli("audit", "list", "--user", "ro")
    assert r.returncode == 0 and "StartVm" in r.stdout, r.stderr
    # Edit one line: verification fails at that line.
    lines = text.splitlines(True)
    lines[1] = lines[1].replace('"result":"OK"', '"result":"OK "', 1) \
        if '"result":"OK"' in lines[1] else lines[1].replace("m1", "m2", 1)
    with open(log, "w") as f:
        f.writelines(lines)
    r = mgr.run_cli("audit", "verify")
    assert r.returncode != 0, r.stdout
    assert "line 2" in r.stdout + r.stderr, r.stdout + r.stderr


def test_cli_login_and_user_commands(mgr, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    pw = tmp_path / "pw"
    pw.write_text(mgr.pki.admin_password + "\n")
    env = mgr.pki.cli_env(home)  # the CA, no token

    def cli(*args, stdin=None):
        import subprocess
        return subprocess.run(
            [mgrlib.binary("bin/canopy"), "--server", mgr.addr] +
            list(args), capture_output=True, text=True, timeout=60,
            env=env, input=stdin)

    r = cli("cluster", "status")
    assert r.returncode != 0 and "log in" in r.stderr, r.stderr
    r = cli("login", "--password-file", str(pw))
    assert r.returncode == 0 and "logged in as admin" in r.stdout, r.stderr
    tokdir = home / ".config" / "canopy" / "tokens"
    assert oct(os.stat(tokdir).st_mode & 0o777) == "0o700"
    for f in tokdir.iterdir():
        assert oct(os.stat(f).st_mode & 0o777) == "0o600"
    assert cli("cluster", "status").returncode == 0
    r = cli("user", "add", "olga", "--description", "ops", stdin="olga-pass-1\n")
    assert r.returncode == 0, r.stderr
    r = cli("permission", "grant", "cluster", "olga", "ReadOnly")
    assert r.returncode == 0, r.stderr
    r = cli("permission", "grant", "vm/x", "olga", "NoSuchRole")
    assert r.returncode != 0 and "NoSuchRole" in r.stderr
    r = cli("user", "list")
    assert "olga" in r.stdout and "admin" in r.stdout
    r = cli("-o", "json", "permission", "list", "--user", "olga")
    assert '"ReadOnly"' in r.stdout
    r = cli("whoami")
    assert "admin" in r.stdout and "user.manage" in r.stdout
    r = cli("role", "list")
    assert "Operator" in r.stdout and "vm.power" in r.stdout
    r = cli("logout")
    assert r.returncode == 0 and "logged out" in r.stdout
    assert cli("cluster", "status").returncode != 0
    r = cli("login", "--user", "olga", stdin="olga-pass-1\n")
    assert r.returncode == 0, r.stderr
    r = cli("vm", "start", "web1")
    assert r.returncode != 0 and "vm.power" in r.stderr, r.stderr
    r = cli("login", "--user", "olga", stdin="wrong-pass\n")
    assert r.returncode != 0 and "wrong user name or password" in r.stderr


def test_the_last_administrator_stays(mgr):
    a = Au()
    revoke = a.RevokeRequest(object="cluster", user="admin")
    code, msg = code_of(lambda: call(mgr.channel, "RoleService", "Revoke",
                                     revoke, a.Permission))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "nobody" in msg
    code, _ = code_of(lambda: grant(mgr, "cluster", "admin", "ReadOnly"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    add_user(mgr, "boss", "boss-pw-123", "Administrator")
    call(mgr.channel, "RoleService", "Revoke", revoke, a.Permission)
    boss = as_user(mgr, "boss", "boss-pw-123")
    code, msg = code_of(lambda: call(boss, "UserService", "DeleteUser",
                                     a.DeleteUserRequest(name="boss"),
                                     a.UserResponse))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    # admin lost its grant: it can log in but do nothing.
    assert code_of(lambda: cluster(mgr.channel))[0] == \
        grpc.StatusCode.PERMISSION_DENIED


def test_host_grant_reaches_its_vms(mgr):
    """Operator on host/h1 may power the VMs placed on h1 and no other;
    a grant on the VM itself still wins."""
    if not os.path.exists(mgrlib.binary("tests/helpers/mgr_fake_agent")):
        pytest.skip("SKIP: tests/helpers/mgr_fake_agent not built")
    C = mgrlib.common
    agent = mgrlib.FakeAgent(mgr, "h1", memory_mib=8192)
    try:
        agent.expect("registered 0")
        for name in ("web1", "web2"):
            t = call(mgr.channel, "VmService", "CreateVm",
                     A().CreateVmRequest(spec=C().VmSpec(
                         name=name, cpus=1, memory_mib=64,
                         kernel="/boot/guest.elf"), host="h1"), A().Task)
            done = list(mgr.stream("TaskService", "WaitTask",
                                   A().WaitTaskRequest(id=t.id), A().Task))
            assert done[-1].state == A().TASK_STATE_SUCCEEDED, done[-1]
        add_user(mgr, "hop", "host-op-pw", "Operator", "host/h1")
        add_user(mgr, "other", "other-op-pw", "Operator", "host/h2")
        grant(mgr, "vm/web2", "hop", "NoAccess")
        hop = as_user(mgr, "hop", "host-op-pw")
        other = as_user(mgr, "other", "other-op-pw")
        assert start_vm(hop, "web1").object == "vm/web1"
        assert code_of(lambda: start_vm(other, "web1"))[0] == \
            grpc.StatusCode.PERMISSION_DENIED
        assert code_of(lambda: start_vm(hop, "web2"))[0] == \
            grpc.StatusCode.PERMISSION_DENIED
    finally:
        agent.close()
