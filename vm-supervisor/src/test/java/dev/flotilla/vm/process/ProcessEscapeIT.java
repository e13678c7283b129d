package dev.flotilla.vm.process;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import java.io.IOException;
import java.net.InetAddress;
import java.net.NetworkInterface;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;
import org.junit.jupiter.api.TestInstance;

/**
 * Attacks from inside real sandboxes of the process driver, as the sandbox's root, with the busybox
 * applets of the default image. Each attempt must fail inside, and a host-side check must confirm
 * that nothing it aimed at changed: sentinel files with known content and mtime, listings before
 * and after, the other sandbox's files, connection counters of host listeners.
 *
 * <p>Every attempt is counted; one that worked is recorded with what it did and fails its test (in
 * {@link #noAttemptWorked}), so a single run names every weakness at once instead of the first.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class ProcessEscapeIT {
  private static final Duration T = Duration.ofSeconds(30);
  private static final AtomicInteger TRIED = new AtomicInteger();
  private static final List<String> WORKED = Collections.synchronizedList(new ArrayList<>());
  /** A fixed past mtime for every sentinel: a write that restores the content still moves it. */
  private static final FileTime SENTINEL_MTIME = FileTime.fromMillis(1_577_836_800_000L);
  /** find(1) arguments that skip /proc and /sys below every starting point (their trees are the kernel's, and huge). */
  private static final String PRUNE = "\\( -path '*/proc' -o -path '*/sys' \\) -prune -o";
  private static final List<Path> HOST_DIRS = List.of(Path.of("/etc"), Path.of("/root"), Path.of("/tmp"), Path.of("/dev/shm"));

  private final String nonce = ProcessHandle.current().pid() + "-" + Long.toHexString(System.nanoTime());
  private final List<String> escapesOfThisTest = Collections.synchronizedList(new ArrayList<>());
  private final Map<Path, String> sentinels = new LinkedHashMap<>();
  private TestSandboxes sandboxes;
  private Vm a;
  private Vm b;
  private AgentClient ca;
  private AgentClient cb;

  @BeforeAll
  void startTwoSandboxes() throws Exception {
    sandboxes = new TestSandboxes();
    a = sandboxes.start(sandboxes.spec());
    b = sandboxes.start(sandboxes.spec());
    ca = sandboxes.connect(a);
    cb = sandboxes.connect(b);
    List<Path> dirs = new ArrayList<>(HOST_DIRS);
    dirs.add(sandboxes.stateRoot);
    for (Path d : dirs) {
      Path f = d.resolve("flotilla-sentinel-" + nonce);
      String content = "host-sentinel-" + nonce + " in " + d + "\n";
      Files.writeString(f, content);
      Files.setLastModifiedTime(f, SENTINEL_MTIME);
      sentinels.put(f, content);
    }
  }

  @AfterAll
  void cleanUpAndReport() {
    try {
      if (sandboxes != null) sandboxes.close();
      for (Path f : sentinels.keySet()) {
        try {
          Files.deleteIfExists(f);
        } catch (IOException e) {
          System.err.println("cleanup: " + e);
        }
      }
    } finally {
      System.out.println("escape attempts: " + TRIED.get() + " tried, " + WORKED.size() + " worked");
      WORKED.forEach(w -> System.out.println("  WORKED: " + w));
    }
  }

  @AfterEach
  void noAttemptWorked(TestInfo test) {
    List<String> worked = List.copyOf(escapesOfThisTest);
    escapesOfThisTest.clear();
    assertEquals(List.of(), worked, test.getDisplayName() + ": escape attempts that worked");
  }

  // ---------------------------------------------------------------- the host's files

  @Test
  void theHostsFilesCannotBeReadOrWritten() throws Exception {
    // Whole listings where nothing else writes during the test; /tmp and /dev/shm churn with the other
    // builds on this machine, so there only the names the attacks try to plant are looked for.
    Map<Path, List<String>> listings = listings(List.of(Path.of("/etc"), Path.of("/root"), sandboxes.stateRoot));
    for (Path sentinel : sentinels.keySet()) {
      String name = sentinel.toString();
      String dir = sentinel.getParent().toString();
      // The same host path seen through every door a container has to its own root and mounts.
      for (String via : List.of("", "/proc/1/root", "/proc/self/root", "/proc/self/cwd/../../..", "/.fl/..", "/.fl/run/../..", "/dev/shm/../..")) {
        var r = inside(ca, "cat '" + via + name + "'");
        attempt("read host " + name + " via '" + via + "'", r.stdout().contains("host-sentinel-" + nonce), r);
      }
      var found = inside(ca, "find / " + PRUNE + " -name 'flotilla-sentinel-*' -print 2>/dev/null; "
          + "ls /proc/*/root" + dir + "/ 2>/dev/null | grep flotilla-sentinel");
      attempt("find host sentinel of " + dir + " anywhere in the sandbox", !found.stdout().isBlank(), found);
    }
    for (Path sentinel : sentinels.keySet()) {
      String name = sentinel.toString();
      String pwned = sentinel.resolveSibling("pwned-" + nonce).toString();
      for (String via : List.of("", "/proc/1/root", "/.fl/run/../..")) {
        inside(ca, "echo pwned > '" + via + name + "'; echo pwned > '" + via + pwned + "'; touch -d '2030-01-01' '" + via + name + "'");
        attempt("write host " + name + " via '" + via + "'", sentinelChanged(sentinel) || Files.exists(Path.of(pwned), LinkOption.NOFOLLOW_LINKS),
            "host " + sentinel + ": " + describe(sentinel));
      }
      inside(ca, "rm -f '" + name + "' '/proc/1/root" + name + "'");
      attempt("delete host " + name, !Files.exists(sentinel), "host " + describe(sentinel));
    }
    // The sandbox's own /etc/shadow does not exist (busybox image); the host's must stay unreachable.
    var shadow = inside(ca, "cat /etc/shadow /proc/1/root/etc/shadow 2>&1; head -c 64 /.fl/../etc/shadow 2>&1");
    attempt("read the host's /etc/shadow", shadow.stdout().contains("root:") && shadow.stdout().contains(":"), shadow);
    for (var e : listings.entrySet()) {
      List<String> now = listing(e.getKey());
      attempt("change the host's listing of " + e.getKey(), !e.getValue().equals(now), e.getKey() + ": " + e.getValue().size() + " entries before, " + now.size() + " after");
    }
    for (Path d : List.of(Path.of("/tmp"), Path.of("/dev/shm"))) {
      try (Stream<Path> s = Files.list(d)) {
        List<Path> planted = s.filter(p -> p.getFileName().toString().equals("pwned-" + nonce)).toList();
        attempt("plant a file in the host's " + d, !planted.isEmpty(), planted.toString());
      }
    }
  }

  // ---------------------------------------------------------------- the other sandbox

  @Test
  void anotherSandboxsFilesAndSocketAreOutOfReach() throws Exception {
    String secret = "b-secret-" + nonce;
    var planted = inside(cb, "echo '" + secret + "' > /" + secret + "; cat /" + secret);
    assertEquals(secret + "\n", planted.stdout(), "B planted its file");
    Path inLayer = sandboxes.layerOf(b.handle().sandboxId()).mountPoint().resolve("upper").resolve(secret);
    assertEquals(secret + "\n", Files.readString(inLayer), "B's file is in B's own writable layer on the host");
    Files.setLastModifiedTime(inLayer, SENTINEL_MTIME);
    Path inRoot = sandboxes.rootfsOnHost(b).resolve(secret);
    Path bSocket = b.agentAddress().unixSocket();
    String bSocketId = fileId(bSocket);

    for (String p : List.of("/" + secret, "/proc/1/root/" + secret, inLayer.toString(), inRoot.toString())) {
      var r = inside(ca, "cat '" + p + "'");
      attempt("A reads B's file at " + p, r.stdout().contains(secret), r);
      inside(ca, "echo pwned > '" + p + "'; rm -f '" + p + "'");
      attempt("A writes or deletes B's file at " + p, !secret.concat("\n").equals(readOrNull(inLayer))
          || !Files.getLastModifiedTime(inLayer).equals(SENTINEL_MTIME), "B's file on the host: " + describe(inLayer));
    }
    var found = inside(ca, "find / /proc/[0-9]*/root/ " + PRUNE + " -name 'b-secret-*' -print 2>/dev/null; "
        + "for r in /proc/[0-9]*/root; do ls $r/ 2>/dev/null; done | grep b-secret");
    attempt("A finds B's file anywhere", !found.stdout().isBlank(), found);
    assertEquals(secret + "\n", inside(cb, "cat /" + secret).stdout(), "B still reads its file as it wrote it");

    // B's agent socket: its host path is not even visible, and every socket A can find is its own.
    var visible = inside(ca, "ls -la '" + bSocket + "' 2>&1; test -e '" + bSocket + "' && echo VISIBLE");
    attempt("A sees B's agent socket at its host path", visible.stdout().contains("VISIBLE"), visible);
    var sockets = inside(ca, "find / /proc/[0-9]*/root/ " + PRUNE + " -type s -print 2>/dev/null | while read s; do stat -c '%d:%i %n' \"$s\"; done");
    // Files told apart by device and inode (each agent directory is a tmpfs of its own, numbering from 1).
    Set<String> ids = new TreeSet<>();
    sockets.stdout().lines().filter(l -> !l.isBlank()).forEach(l -> ids.add(l.split(" ")[0]));
    attempt("A finds B's agent socket through /proc/*/root or its mounts", ids.contains(bSocketId), sockets);
    assertEquals(Set.of(fileId(a.agentAddress().unixSocket())), ids, "A finds its own agent socket only: " + sockets.stdout());
  }

  // ---------------------------------------------------------------- host processes

  @Test
  void hostProcessesAreInvisibleAndUntouchable() throws Exception {
    long me = ProcessHandle.current().pid();
    long bAgent = TestSandboxes.agentHostPid(b);
    var ps = inside(ca, "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(cat $p/comm 2>/dev/null)\"; done");
    List<String> seen = ps.stdout().lines().filter(l -> !l.isBlank()).toList();
    long javas = seen.stream().filter(l -> l.endsWith(" java")).count();
    // tini, the agent, this shell and its command substitutions: one java only (B's agent and the node are java too).
    attempt("see processes outside the sandbox in /proc", javas != 1 || seen.size() > 10, "inside /proc: " + seen);
    var busyboxPs = inside(ca, "ps -o pid,user,comm");
    attempt("see processes outside the sandbox with ps", busyboxPs.stdout().lines().count() > 10, busyboxPs);
    for (long pid : List.of(me, bAgent, 1L)) {
      if (pid == 1) continue; // the sandbox's own init: not a host pid
      var r = inside(ca, "test -d /proc/" + pid + " && echo VISIBLE; kill -0 " + pid + " && echo SIGNALLED; kill -STOP " + pid
          + " && echo STOPPED; cat /proc/" + pid + "/mem > /dev/null && echo READ; ls /proc/" + pid + "/root/ && echo ROOT");
      attempt("see, signal or ptrace-read host pid " + pid, r.stdout().contains("VISIBLE") || r.stdout().contains("SIGNALLED")
          || r.stdout().contains("STOPPED") || r.stdout().contains("READ") || r.stdout().contains("ROOT"), r);
      attempt("stop host pid " + pid, Procfs.stat(pid).map(s -> s.state() == 'T').orElse(false),
          "host pid " + pid + " state " + Procfs.stat(pid).map(s -> String.valueOf(s.state())).orElse("gone"));
    }
  }

  // ---------------------------------------------------------------- kernel interfaces

  @Test
  void privilegedKernelInterfacesAreRefused() throws Exception {
    String corePattern = Files.readString(Path.of("/proc/sys/kernel/core_pattern"));
    String hostname = Files.readString(Path.of("/proc/sys/kernel/hostname"));
    Map<String, String> mustFail = new LinkedHashMap<>();
    mustFail.put("mount a tmpfs", "mount -t tmpfs x /mnt");
    mustFail.put("mount a new proc", "mount -t proc proc /mnt");
    mustFail.put("bind-mount /", "mount --bind / /mnt");
    mustFail.put("remount /.fl writable", "mount -o remount,rw /.fl");
    mustFail.put("mount a cgroup v1 hierarchy (release_agent)", "mkdir -p /tmp/cg && mount -t cgroup -o rdma cgroup /tmp/cg");
    mustFail.put("unshare a user namespace", "unshare -U true");
    mustFail.put("unshare a user namespace mapping root", "unshare -r true");
    mustFail.put("unshare a mount namespace", "unshare -m true");
    mustFail.put("unshare a network namespace", "unshare -n true");
    mustFail.put("unshare a pid namespace", "unshare -p -f true");
    mustFail.put("unshare an IPC namespace", "unshare -i true");
    mustFail.put("unshare a UTS namespace", "unshare -u true");
    mustFail.put("nsenter (setns) into init's namespaces", "nsenter -t 1 -m -u -i -n -p true");
    mustFail.put("nsenter a user namespace", "nsenter -t 1 -U true");
    mustFail.put("pivot_root", "mkdir -p /tmp/new/old && pivot_root /tmp/new /tmp/new/old");
    // This CI kernel has no module support, no sysrq and no /proc/kcore: those three files do not exist
    // here and their attempts fail for that reason too; on other hosts the bundle's read-only and masked
    // /proc paths (BundleConfig) and seccomp (init_module, finit_module) are what refuses them.
    mustFail.put("insmod a module", "printf '\\177ELF' > /tmp/m.ko && insmod /tmp/m.ko");
    mustFail.put("write /proc/sys/kernel/modules_disabled", "echo 1 > /proc/sys/kernel/modules_disabled");
    mustFail.put("write /proc/sys/kernel/core_pattern", "echo '|/tmp/x' > /proc/sys/kernel/core_pattern");
    mustFail.put("write /proc/sys/kernel/hostname", "echo pwned > /proc/sys/kernel/hostname");
    mustFail.put("sysctl -w vm.drop_caches", "sysctl -w vm.drop_caches=3");
    mustFail.put("write /proc/sysrq-trigger", "echo h > /proc/sysrq-trigger");
    mustFail.put("write /sys/kernel/uevent_helper", "echo /tmp/x > /sys/kernel/uevent_helper");
    mustFail.put("write /sys/class/net/lo/mtu", "echo 1280 > /sys/class/net/lo/mtu");
    mustFail.put("create a directory in /sys", "mkdir /sys/pwned");
    mustFail.put("read /proc/kcore", "head -c 1 /proc/kcore | grep -q .");
    mustFail.put("read /proc/keys", "cat /proc/keys | grep -q .");
    mustFail.put("swapon a file", "dd if=/dev/zero of=/tmp/sw bs=1k count=64 2>/dev/null && mkswap /tmp/sw >/dev/null && swapon /tmp/sw");
    // busybox date reports a refused settimeofday and still exits 0: its stderr is the witness.
    mustFail.put("set the clock", "date -s '2030-01-01 00:00:00' 2>&1 | grep -q \"can't set date\" && exit 1; exit 0");
    mustFail.put("add a network link (CAP_NET_ADMIN)", "ip link add pwned type dummy");
    mustFail.put("chown a file into an unmapped id", "touch /tmp/o && chown 70000 /tmp/o");
    for (var e : mustFail.entrySet()) {
      var r = inside(ca, e.getValue());
      attempt(e.getKey(), succeeded(r), r);
    }
    attempt("set the host's clock", Math.abs(System.currentTimeMillis() - java.time.Instant.parse("2030-01-01T00:00:00Z").toEpochMilli()) < 86_400_000L,
        "host clock " + java.time.Instant.now());
    String corePatternNow = Files.readString(Path.of("/proc/sys/kernel/core_pattern"));
    attempt("change the host's core_pattern", !corePattern.equals(corePatternNow), "host core_pattern " + corePatternNow.strip());
    String hostnameNow = Files.readString(Path.of("/proc/sys/kernel/hostname"));
    attempt("change the host's name", !hostname.equals(hostnameNow), "host name " + hostnameNow.strip());
  }

  @Test
  void devicesOfTheHostAreAbsentAndCannotBeMade() throws Exception {
    Set<String> allowed = Set.of("console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero");
    var ls = inside(ca, "ls -1 /dev");
    List<String> extra = ls.stdout().lines().filter(l -> !l.isBlank() && !allowed.contains(l)).toList();
    attempt("see host devices in /dev", !extra.isEmpty(), "unexpected in /dev: " + extra);
    for (String dev : List.of("/dev/kvm", "/dev/vda", "/dev/sda", "/dev/loop0", "/dev/loop-control", "/dev/mem", "/dev/kmem", "/dev/port")) {
      var r = inside(ca, "test -e " + dev + " && echo EXISTS; head -c 1 " + dev + " | grep -q . && echo READ");
      attempt("open " + dev, r.stdout().contains("EXISTS") || r.stdout().contains("READ"), r);
    }
    // The host's root disk by its own major:minor, made with mknod and read.
    String majMin = hostDeviceNumbers("/");
    String[] mm = majMin.split(":");
    var mk = inside(ca, "mknod /tmp/disk b " + mm[0] + " " + mm[1] + " && echo MADE; dd if=/tmp/disk bs=512 count=1 2>/dev/null | grep -q . && echo READ");
    attempt("mknod the host's root disk (" + majMin + ") and read it", mk.stdout().contains("MADE") || mk.stdout().contains("READ"), mk);
    var mem = inside(ca, "mknod /tmp/mem c 1 1 && echo MADE; head -c 1 /tmp/mem | grep -q . && echo READ");
    attempt("mknod /dev/mem and read it", mem.stdout().contains("MADE") || mem.stdout().contains("READ"), mem);
  }

  // ---------------------------------------------------------------- network

  @Test
  void theHostsLoopbackAndAddressesAreUnreachable() throws Exception {
    try (ServerSocket loopback = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        ServerSocket any = new ServerSocket(0, 50, null)) {
      AtomicInteger accepted = new AtomicInteger();
      for (ServerSocket s : List.of(loopback, any)) acceptCounting(s, accepted);
      int lp = loopback.getLocalPort();
      var nc = inside(ca, "echo hello | nc -w 2 127.0.0.1 " + lp);
      attempt("nc to the host's 127.0.0.1:" + lp, succeeded(nc), nc);
      var wget = inside(ca, "wget -T 2 -q -O - http://127.0.0.1:" + lp + "/");
      attempt("wget the host's 127.0.0.1:" + lp, succeeded(wget), wget);
      for (String ip : hostAddresses()) {
        var r = inside(ca, "echo hello | nc -w 2 " + ip + " " + any.getLocalPort());
        attempt("nc to the host's " + ip + ":" + any.getLocalPort(), succeeded(r), r);
      }
      // A host-side client proves the listeners answer: a zero count below means "unreachable", not "broken".
      try (Socket probe = new Socket(InetAddress.getLoopbackAddress(), lp)) {
        org.awaitility.Awaitility.await().atMost(T).until(() -> accepted.get() >= 1);
      }
      attempt("connect to a host listener from the sandbox", accepted.get() != 1, "host listeners accepted " + accepted.get() + " (1 is the host's own probe)");
    }
  }

  // ---------------------------------------------------------------- hardening as seen from both sides

  @Test
  void eachSandboxHasItsOwnUnprivilegedUidSeccompAndNoNewPrivileges() throws Exception {
    long aAgent = TestSandboxes.agentHostPid(a);
    long bAgent = TestSandboxes.agentHostPid(b);
    String aUid = TestSandboxes.status(aAgent, "Uid").get(0);
    String bUid = TestSandboxes.status(bAgent, "Uid").get(0);
    assertNotEquals(aUid, bUid, "two sandboxes, two host uids");
    for (String uid : List.of(aUid, bUid)) assertTrue(Long.parseLong(uid) >= 65536, "a subordinate id, not a host user: " + uid);
    var status = inside(ca, "grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd|CapAmb):' /proc/self/status");
    Map<String, String> f = new LinkedHashMap<>();
    status.stdout().lines().map(l -> l.split(":\\s+")).forEach(kv -> f.put(kv[0], kv[1].trim()));
    assertEquals("2", f.get("Seccomp"), status.stdout());
    assertEquals("1", f.get("NoNewPrivs"), status.stdout());
    for (String which : List.of("CapEff", "CapBnd")) {
      long caps = Long.parseUnsignedLong(f.get(which), 16);
      for (var cap : Map.of("CAP_SYS_ADMIN", 21, "CAP_NET_ADMIN", 12, "CAP_SYS_PTRACE", 19, "CAP_SYS_MODULE", 16, "CAP_SYS_RAWIO", 17,
          "CAP_DAC_READ_SEARCH", 2, "CAP_SYS_TIME", 25, "CAP_SYSLOG", 34, "CAP_BPF", 39).entrySet()) {
        assertEquals(0, caps & (1L << cap.getValue()), which + " lacks " + cap.getKey() + ": " + f.get(which));
      }
    }
    // The host sees the same of the agent's process.
    assertEquals(List.of("2"), TestSandboxes.status(aAgent, "Seccomp"));
    assertEquals(List.of("1"), TestSandboxes.status(aAgent, "NoNewPrivs"));
    assertEquals(List.of(f.get("CapEff")), TestSandboxes.status(aAgent, "CapEff"));
  }

  // ---------------------------------------------------------------- forged links, then stop, destroy, reap

  @Test
  // The node connects through its own hard link to the socket the agent bound (ProcessVm.linkAgentSocket),
  // never through /.fl/run/agent.sock, which the sandbox can swap for a link to any host socket.
  void aForgedAgentSocketNeverLeadsTheNodeToAnotherSocket() throws Exception {
    Vm c = sandboxes.start(sandboxes.spec());
    AgentClient cc = sandboxes.connect(c);
    Path bSocket = b.agentAddress().unixSocket();
    // A host service the sandbox wants the node to talk to (a stand-in for any root-only socket).
    Path service = sandboxes.stateRoot.resolve("host-service-" + nonce + ".sock");
    AtomicInteger serviceConnections = new AtomicInteger();
    try (ServerSocketChannel hostService = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
      hostService.bind(UnixDomainSocketAddress.of(service));
      Thread acceptor = new Thread(() -> {
        try {
          while (true) {
            SocketChannel ch = hostService.accept();
            serviceConnections.incrementAndGet();
            ch.close();
          }
        } catch (IOException e) {
          // closed at the end of the test
        }
      }, "fake-host-service");
      acceptor.setDaemon(true);
      acceptor.start();

      // The sandbox knows these host paths at best by guessing; the test gives them, the worst case.
      for (Path target : List.of(service, bSocket)) {
        var swap = inside(cc, "rm -f /.fl/run/agent.sock; ln -s '" + target + "' /.fl/run/agent.sock; ls -l /.fl/run/agent.sock");
        assertTrue(swap.stdout().contains("->"), "the sandbox replaced its socket by a link: " + swap);
        int before = serviceConnections.get();
        String reply;
        try (AgentClient node = AgentClients.connect(c.agentAddress(), Duration.ofSeconds(2))) {
          node.handshake(c.handle().sandboxId(), c.handle().incarnation(), Duration.ofSeconds(3)).join();
          reply = "answered as " + TestSandboxes.run(node, T, "hostname").stdout().strip();
        } catch (RuntimeException e) {
          reply = e.toString();
        }
        // B's agent refuses a handshake naming C, and says whom it serves; the fake service counts connections.
        boolean reached = target.equals(service) ? serviceConnections.get() > before
            : reply.contains("serves sandbox '" + b.handle().sandboxId() + "'") || reply.equals("answered as " + ProcessVm.hostname(b.handle().sandboxId()));
        attempt("make the node connect through a forged agent.sock -> " + target, reached,
            "the node's connection to " + c.agentAddress() + ": " + reply + "; host service connections " + serviceConnections.get());
      }
    } finally {
      Files.deleteIfExists(service);
    }
    assertEquals("ok\n", inside(cb, "echo ok").stdout(), "B still answers");
  }

  @Test
  void plantedSymlinksAreNeverFollowedByStopDestroyRestartOrReap() throws Exception {
    Vm c = sandboxes.start(sandboxes.spec());
    AgentClient cc = sandboxes.connect(c);
    Path shadow = Path.of("/etc/shadow");
    String shadowBefore = Files.exists(shadow) ? Files.readString(shadow) : null;
    FileTime shadowMtime = Files.exists(shadow) ? Files.getLastModifiedTime(shadow) : null;
    Path stateSentinel = sandboxes.stateRoot.resolve("flotilla-sentinel-" + nonce);
    Path bSocket = b.agentAddress().unixSocket();
    List<String> othersState = listingExcept(sandboxes.stateRoot, c.handle().sandboxId());
    List<String> etc = listing(Path.of("/etc"));

    // Links to host files in the writable layer and in the one host directory the sandbox can write (/.fl/run).
    Map<String, Path> targets = new LinkedHashMap<>();
    targets.put("shadow", shadow);
    targets.put("state", sandboxes.stateRoot);
    targets.put("sentinel", stateSentinel);
    targets.put("etc", Path.of("/etc"));
    targets.put("bsock", bSocket);
    StringBuilder plant = new StringBuilder();
    for (var t : targets.entrySet()) {
      for (String dir : List.of("", "/.fl/run", "/tmp")) {
        plant.append("ln -sf '").append(t.getValue()).append("' '").append(dir).append("/evil-").append(t.getKey()).append("'; ");
      }
    }
    // The run directory itself as a link target too: the node deletes and recreates it for each incarnation.
    plant.append("ln -s /etc/shadow /.fl/run/agent.log; ");
    var planted = inside(cc, plant + "ls -la / /.fl/run /tmp | grep -c evil-");
    assertEquals("15", planted.stdout().trim(), "the links are planted: " + planted);

    // Stop, destroy, start a second incarnation over the same layer (the node recreates /.fl/run and
    // mounts the layer again), then kill, reap and release everything.
    c.stop(Duration.ofSeconds(5));
    c.destroy();
    String id = c.handle().sandboxId();
    VmSpec second = new VmSpec(id, 2, 1, 256, 0, sandboxes.hypervisor.config().stateDirFor(id, 2), Map.of());
    Vm c2 = sandboxes.start(second);
    AgentClient cc2 = sandboxes.connect(c2);
    assertEquals("10", inside(cc2, "ls -la / /.fl/run /tmp | grep -c evil-").stdout().trim(),
        "the layer's links (in / and /tmp) survive into incarnation 2; its /.fl/run starts empty");
    VmHandle h2 = c2.handle();
    c2.kill();
    c2.exitFuture().get(T.toSeconds(), java.util.concurrent.TimeUnit.SECONDS);
    sandboxes.hypervisor.reap(h2);
    sandboxes.hypervisor.releaseSandbox(id);
    assertFalse(Files.exists(sandboxes.layerOf(id).image()), "the layer is released");

    if (shadowBefore != null) {
      attempt("change /etc/shadow through a planted link", !shadowBefore.equals(Files.readString(shadow))
          || !shadowMtime.equals(Files.getLastModifiedTime(shadow)), describe(shadow));
    }
    attempt("change the host's /etc through a planted link", !etc.equals(listing(Path.of("/etc"))), "/etc: " + etc.size() + " entries before, " + listing(Path.of("/etc")).size() + " after");
    attempt("delete or change the state root's sentinel through a planted link", sentinelChanged(stateSentinel), describe(stateSentinel));
    attempt("delete the state root or another sandbox's state through a planted link",
        !othersState.equals(listingExcept(sandboxes.stateRoot, id)), "state root now: " + listingExcept(sandboxes.stateRoot, id) + " was " + othersState);
    attempt("delete B's agent socket through a planted link", !Files.exists(bSocket, LinkOption.NOFOLLOW_LINKS), bSocket.toString());
    assertEquals("ok\n", inside(cb, "echo ok").stdout(), "B still answers");
    for (Path sentinel : sentinels.keySet()) attempt("change " + sentinel + " through a planted link", sentinelChanged(sentinel), describe(sentinel));
  }

  // ---------------------------------------------------------------- limits, without harming the node

  @Test
  void memoryPidsAndDiskLimitsHoldInsideWithoutHarmingTheNode() throws Exception {
    Vm l = sandboxes.start(sandboxes.spec(128, 96, 32));
    AgentClient cl = sandboxes.connect(l);

    var oom = TestSandboxes.run(cl, T, "tail", "/dev/zero");
    String oomControl = Files.readString(sandboxes.cgroupDir(Cgroups.Controller.MEMORY, l).resolve("memory.oom_control"));
    attempt("use more memory than the sandbox's 128 MiB", oom.status().signal() != 9 || !oomControl.matches("(?s).*oom_kill [1-9].*"),
        oom + " / " + oomControl);

    // Fired and forgotten: out of pids, the agent cannot make a thread either and drops the connection
    // it needed one for; the shell's complaint lands in the sandbox's root, read through the node's mount.
    // The storm waits for the agent's output threads: one that starts at once can take the pids they
    // need, and the exec that started it is then refused and killed (a CI run saw that).
    sandboxes.stormOnceTheAgentIsReady(cl, l, "n=0; while [ $n -lt 300 ]; do sleep 1 & n=$((n+1)); done 2>/fork.err; wait");
    Path pidsDir = sandboxes.cgroupDir(Cgroups.Controller.PIDS, l);
    Path forkErr = sandboxes.rootfsOnHost(l).resolve("fork.err");
    org.awaitility.Awaitility.await().atMost(T).untilAsserted(() -> {
      String events = Files.readString(pidsDir.resolve("pids.events"));
      String err = Files.exists(forkErr) ? Files.readString(forkErr) : "(no /fork.err)";
      assertTrue(events.matches("(?s).*max [1-9].*") && err.contains("can't fork"),
          "the storm runs out of pids: pids.events " + events.strip() + ", pids.current "
              + Files.readString(pidsDir.resolve("pids.current")).strip() + ", /fork.err " + err.strip());
    });
    long peak = Long.parseLong(Files.readString(pidsDir.resolve("pids.current")).trim());
    attempt("run more than the sandbox's 96 tasks", peak > 96, "pids.current " + peak);
    // A new connection once the sleeps are gone (a connection while out of pids breaks the agent: a known
    // guest-agent bug, see ProcessHypervisorTest.theAgentStillAcceptsAfterAConnectionCameWhileOutOfPids).
    org.awaitility.Awaitility.await().atMost(T).until(() -> Long.parseLong(Files.readString(pidsDir.resolve("pids.current")).trim()) < 60);
    AgentClient cl2 = sandboxes.connect(l);

    WritableLayer layer = sandboxes.layerOf(l.handle().sandboxId());
    long freeBefore = Files.getFileStore(sandboxes.stateRoot).getUsableSpace();
    // Asks for 16 times the cap: a cap that did not hold would cost the host 512 MiB, far beyond the noise
    // of other builds on this machine.
    var dd = TestSandboxes.run(cl2, Duration.ofSeconds(120), "dd", "if=/dev/zero", "of=/fill", "bs=1M", "count=512");
    long freeAfter = Files.getFileStore(sandboxes.stateRoot).getUsableSpace();
    long allocated = allocatedBytes(layer.image());
    System.out.printf("disk: dd %s; layer image allocates %d MiB of its 32; host free space moved by %d MiB%n",
        dd.stderr().lines().filter(s -> s.contains("space") || s.contains("copied")).toList(), allocated >> 20, (freeBefore - freeAfter) >> 20);
    attempt("write past the sandbox's 32 MiB disk", !dd.stderr().contains("No space left on device") || allocated > (32L << 20),
        dd + "; the layer allocates " + allocated + " bytes");
    attempt("fill the host's disk through the sandbox", freeBefore - freeAfter > (256L << 20),
        "host free space dropped by " + ((freeBefore - freeAfter) >> 20) + " MiB");
    inside(cl2, "rm -f /fill");

    // The node is fine: this JVM runs this line, the other sandboxes answer, and so does this one.
    assertEquals("ok\n", inside(ca, "echo ok").stdout());
    assertEquals("ok\n", inside(cb, "echo ok").stdout());
    org.awaitility.Awaitility.await().atMost(T).ignoreExceptions().untilAsserted(() -> assertEquals("ok\n", TestSandboxes.run(cl2, Duration.ofSeconds(5), "echo", "ok").stdout()));
  }

  @Test
  // The node mounts a 1 MiB tmpfs under it (ProcessVm.AGENT_DIR_TMPFS): dd ends with ENOSPC there.
  void theAgentDirectoryIsNoWayPastTheDiskCap() throws Exception {
    // /.fl/run is the one host directory the sandbox can write (its agent socket's): what it holds must
    // count against the sandbox's caps, not the host's disk or /run.
    Vm l = sandboxes.start(sandboxes.spec(256, 0, 32));
    AgentClient cl = sandboxes.connect(l);
    Path fillOnHost = ProcessVm.Places.of(sandboxes.hypervisor.config(), l.handle().sandboxId(), l.handle().incarnation()).runDir().resolve("fill");
    long freeBefore = Files.getFileStore(sandboxes.hypervisor.config().runRoot()).getUsableSpace();
    var dd = TestSandboxes.run(cl, Duration.ofSeconds(120), "dd", "if=/dev/zero", "of=/.fl/run/fill", "bs=1M", "count=512");
    long freeAfter = Files.getFileStore(sandboxes.hypervisor.config().runRoot()).getUsableSpace();
    long onHost = Files.exists(fillOnHost, LinkOption.NOFOLLOW_LINKS) ? allocatedBytes(fillOnHost) : 0;
    attempt("write 512 MiB into the host's run root through /.fl/run", onHost > (32L << 20) || freeBefore - freeAfter > (256L << 20),
        dd + "; the file takes " + (onHost >> 20) + " MiB on the host, whose free space there dropped by " + ((freeBefore - freeAfter) >> 20) + " MiB");
    inside(cl, "rm -f /.fl/run/fill");
  }

  @Test
  void sandboxesOfTwoNodesOnOneHostHaveDistinctHostUids() throws Exception {
    // A second node on this host (its own data directory, as a local cluster or the chaos suite has it).
    try (TestSandboxes otherNode = new TestSandboxes()) {
      Vm other = otherNode.start(otherNode.spec());
      Set<String> ours = Set.of(TestSandboxes.status(TestSandboxes.agentHostPid(a), "Uid").get(0),
          TestSandboxes.status(TestSandboxes.agentHostPid(b), "Uid").get(0));
      String theirs = TestSandboxes.status(TestSandboxes.agentHostPid(other), "Uid").get(0);
      attempt("run as the same host uid as a sandbox of another node on this host", ours.contains(theirs),
          "this node's sandboxes run as " + ours + ", the other node's as " + theirs);
    }
  }

  // ---------------------------------------------------------------- helpers

  /** Counts one attempt; one that worked fails this test (after its other attempts ran). */
  private void attempt(String what, boolean worked, Object evidence) {
    TRIED.incrementAndGet();
    String e = String.valueOf(evidence).replace('\n', ' ');
    System.out.println((worked ? "WORKED  " : "refused ") + what + " -- " + (e.length() > 240 ? e.substring(0, 240) + "..." : e));
    if (worked) {
      String w = what + " -- " + evidence;
      WORKED.add(w);
      escapesOfThisTest.add(w);
    }
  }

  /** Exit 0, not killed: busybox's wget dies of SIGSEGV on a refused connection here, which is no success. */
  private static boolean succeeded(TestSandboxes.Result r) {
    return r.status().exitCode() == 0 && r.status().signal() == 0;
  }

  private static TestSandboxes.Result inside(AgentClient c, String script) throws Exception {
    return TestSandboxes.run(c, T, "sh", "-c", script);
  }

  private boolean sentinelChanged(Path sentinel) throws IOException {
    if (!Files.exists(sentinel, LinkOption.NOFOLLOW_LINKS) || Files.isSymbolicLink(sentinel)) return true;
    return !sentinels.get(sentinel).equals(Files.readString(sentinel)) || !Files.getLastModifiedTime(sentinel).equals(SENTINEL_MTIME);
  }

  private static String describe(Path p) {
    try {
      if (!Files.exists(p, LinkOption.NOFOLLOW_LINKS)) return p + " missing";
      return p + " mtime " + Files.getLastModifiedTime(p, LinkOption.NOFOLLOW_LINKS) + (Files.isRegularFile(p) && Files.size(p) < 4096 && !p.toString().equals("/etc/shadow")
          ? " content " + Files.readString(p).strip() : "");
    } catch (IOException e) {
      return p + ": " + e;
    }
  }

  private static String readOrNull(Path p) {
    try {
      return Files.readString(p);
    } catch (IOException e) {
      return null;
    }
  }

  private static List<String> listing(Path dir) throws IOException {
    try (Stream<Path> s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).sorted().toList();
    }
  }

  private static Map<Path, List<String>> listings(List<Path> dirs) throws IOException {
    Map<Path, List<String>> m = new LinkedHashMap<>();
    for (Path d : dirs) m.put(d, listing(d));
    return m;
  }

  private static List<String> listingExcept(Path dir, String sandboxId) throws IOException {
    return listing(dir).stream().filter(n -> !n.startsWith(sandboxId) && !n.startsWith("host-service-") && !n.equals("id-ranges")
        && !n.equals("id-ranges.tmp")).toList();
  }

  /** {@code device:inode} in decimal, as busybox's {@code stat -c '%d:%i'} prints it inside. */
  private static String fileId(Path p) throws IOException {
    return Files.getAttribute(p, "unix:dev", LinkOption.NOFOLLOW_LINKS) + ":" + inode(p);
  }

  private static long inode(Path p) throws IOException {
    return ((Number) Files.getAttribute(p, "unix:ino", LinkOption.NOFOLLOW_LINKS)).longValue();
  }

  /** Bytes the file really occupies on the host's disk (st_blocks), not its apparent (sparse) size. */
  private static long allocatedBytes(Path file) throws Exception {
    Process p = new ProcessBuilder("stat", "-c", "%b %B", file.toString()).start();
    String[] out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim().split(" ");
    p.waitFor();
    return Long.parseLong(out[0]) * Long.parseLong(out[1]);
  }

  /** major:minor of the block device holding {@code mountPoint} on the host (from its mountinfo). */
  private static String hostDeviceNumbers(String mountPoint) throws IOException {
    for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
      String[] f = line.split(" ");
      if (f[4].equals(mountPoint)) return f[2];
    }
    throw new AssertionError("no mount at " + mountPoint);
  }

  private static List<String> hostAddresses() throws IOException {
    List<String> out = new ArrayList<>();
    for (NetworkInterface nif : Collections.list(NetworkInterface.getNetworkInterfaces())) {
      if (nif.isLoopback() || !nif.isUp()) continue;
      nif.inetAddresses().filter(x -> x instanceof java.net.Inet4Address).forEach(x -> out.add(x.getHostAddress()));
    }
    return out;
  }

  private static void acceptCounting(ServerSocket s, AtomicInteger accepted) {
    Thread t = new Thread(() -> {
      while (!s.isClosed()) {
        try (Socket ignored = s.accept()) {
          accepted.incrementAndGet();
        } catch (IOException e) {
          return;
        }
      }
    }, "host-listener-" + s.getLocalPort());
    t.setDaemon(true);
    t.start();
  }
}
