package dev.flotilla.vm.process;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmException;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.net.EgressConfig;
import dev.flotilla.vm.net.EgressPolicy;
import dev.flotilla.vm.net.EgressRules;
import dev.flotilla.vm.net.HostFirewall;
import dev.flotilla.vm.net.NameSets;
import java.io.IOException;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Egress networking of real runc sandboxes against "the internet" of {@link TestInternet}: two
 * external hosts with an HTTP server, a DNS server on the node's end of the link, and a listener
 * of the node's own. Every refusal is tested against a destination that does listen, so it can
 * only come from the node's rules.
 */
class EgressNetworkTest {
  private static final Duration T = Duration.ofSeconds(30);
  private static final String HELLO = TestInternet.HELLO;

  private TestInternet internet;
  private TestSandboxes sandboxes;
  private TestInternet.NodePort nodePort;

  @BeforeEach
  void setUp() throws Exception {
    internet = TestInternet.create();
    nodePort = new TestInternet.NodePort();
  }

  @AfterEach
  void tearDown() throws Exception {
    String prefix = sandboxes == null ? null : sandboxes.hypervisor.networks().commentPrefix();
    if (sandboxes != null) sandboxes.close();
    if (nodePort != null) nodePort.close();
    if (internet != null) internet.close();
    if (prefix != null) {
      // nothing of this test's sandboxes is left on the host: no rules, no pasta
      HostFirewall fw = new HostFirewall();
      Map<Long, String> left = fw.installed(prefix);
      for (var e : left.entrySet()) fw.remove(e.getKey(), e.getValue());
      assertTrue(left.isEmpty(), "rules left behind: " + left);
      assertTrue(pastaOf(prefix).isEmpty(), "pasta left behind");
    }
  }

  /** Sandboxes whose driver resolves with the test's DNS and refuses {@code protectedEndpoints}. */
  private TestSandboxes sandboxes(String... protectedEndpoints) throws Exception {
    TestSandboxes s = new TestSandboxes();
    EgressConfig net = s.hypervisor.config().network().withDnsServers(List.of(InetAddress.getByName(internet.hostEnd())))
        .withProtectedEndpoints(List.of(protectedEndpoints)).withRefresh(Duration.ofHours(1));
    s.hypervisor = new ProcessHypervisor(s.hypervisor.config().withNetwork(net));
    sandboxes = s;
    return s;
  }

  private VmSpec egress(String allow, String deny) {
    return sandboxes.spec().withOption(EgressPolicy.NETWORK, "egress").withOption(EgressPolicy.ALLOW, allow)
        .withOption(EgressPolicy.DENY, deny);
  }

  /**
   * busybox wget under a 4 s timeout (busybox 1.35's own -T crashes on a refused connection).
   * pasta 2023-03 does not pass a refused connect on as a reset: inside, a refused destination
   * looks like one that never answers (SYN retransmits, each refused again by the node), so
   * refusal here is "no answer in 4 s" while the same path answers an allowed destination in
   * milliseconds. The exact refusal (ECONNREFUSED) is checked on the host, as the sandbox's uid.
   */
  private static TestSandboxes.Result wget(AgentClient c, String url) throws Exception {
    return TestSandboxes.run(c, T, "/bin/busybox", "timeout", "4", "/bin/busybox", "wget", "-q", "-O", "-", url);
  }

  private static void assertReaches(AgentClient c, String url) throws Exception {
    TestSandboxes.Result r = wget(c, url);
    assertTrue(r.stdout().contains(HELLO), url + " should answer: " + r);
  }

  private static void assertRefused(AgentClient c, String url) throws Exception {
    TestSandboxes.Result r = wget(c, url);
    assertFalse(r.stdout().contains(HELLO) || r.stdout().contains("node-secret"), url + " should be refused: " + r);
    assertTrue(r.status().exitCode() != 0 || r.status().signal() != 0, url + " should fail: " + r);
  }

  @Test
  void noneReachesNothing() throws Exception {
    sandboxes();
    Vm vm = sandboxes.start(sandboxes.spec());
    AgentClient c = sandboxes.connect(vm);
    TestSandboxes.Result r = wget(c, internet.url(internet.external(), "index.html"));
    assertFalse(r.stdout().contains(HELLO), r.toString());
    assertNotEquals(0, r.status().exitCode(), r.toString());
    assertTrue(pastaOf(sandboxes.hypervisor.networks().commentPrefix()).isEmpty(), "no pasta for network none");
    assertTrue(sandboxes.hypervisor.networks().firewall().installed(sandboxes.hypervisor.networks().commentPrefix()).isEmpty());
  }

  @Test
  void egressReachesAnAllowedDestinationAndADeniedOneIsRefusedAndDnsResolves() throws Exception {
    sandboxes();
    internet.dns.put("www.flotilla.test", internet.external());
    Vm vm = sandboxes.start(egress("", internet.otherExternal()));
    AgentClient c = sandboxes.connect(vm);
    assertReaches(c, internet.url(internet.external(), "index.html"));
    assertRefused(c, internet.url(internet.otherExternal(), "index.html"));
    TestSandboxes.Result ns = TestSandboxes.run(c, T, "/bin/busybox", "nslookup", "www.flotilla.test");
    assertTrue(ns.stdout().contains(internet.external()), "DNS resolves inside the sandbox: " + ns);
    assertReaches(c, "http://www.flotilla.test:" + TestInternet.HTTP_PORT + "/index.html");
    // the rules are the host's, matched by the sandbox's own uid
    long uid = sandboxes.hypervisor.sandboxRootHostUid(vm.handle().sandboxId()).orElseThrow();
    SandboxNetwork n = ((ProcessVm) vm).network();
    assertEquals(uid, n.uid);
    assertEquals(List.of(Long.toString(uid)), TestSandboxes.status(n.pastaPid(), "Uid").subList(0, 1), "pasta runs as the sandbox's uid");
  }

  @Test
  void denyWinsOverAllow() throws Exception {
    sandboxes();
    Vm vm = sandboxes.start(egress(internet.subnet + "0/24", internet.otherExternal() + "/32"));
    AgentClient c = sandboxes.connect(vm);
    assertReaches(c, internet.url(internet.external(), "index.html"));
    assertRefused(c, internet.url(internet.otherExternal(), "index.html"));
  }

  @Test
  void aNonEmptyAllowListAllowsOnlyItsEntries() throws Exception {
    sandboxes();
    Vm vm = sandboxes.start(egress(internet.external(), ""));
    AgentClient c = sandboxes.connect(vm);
    assertReaches(c, internet.url(internet.external(), "index.html"));
    assertRefused(c, internet.url(internet.otherExternal(), "index.html"));
  }

  /**
   * Names are matched at connection time: the address the sandbox is answered is allowed (or
   * denied) when it connects, though the name had no address when the sandbox started; its DNS
   * reaches only its node-side proxy, whatever server it names.
   */
  @Test
  void aListedHostNameIsMatchedAtConnectionTimeAndADeniedNameIsRefusedThoughACidrAllowsIt() throws Exception {
    sandboxes();
    Vm vm = sandboxes.start(egress("api.flotilla.test," + internet.otherExternal(), "bad.flotilla.test"));
    AgentClient c = sandboxes.connect(vm);
    long uid = ((ProcessVm) vm).network().uid;
    NameSets sets = new NameSets(uid);
    // Neither name has an address yet: nothing of them is in the rules, and the address is refused (as the sandbox's uid).
    assertTrue(asSandbox(uid, internet.url(internet.external(), "index.html")).contains("refused"));
    internet.dns.put("api.flotilla.test", internet.external());
    assertReaches(c, "http://api.flotilla.test:" + TestInternet.HTTP_PORT + "/index.html");
    assertTrue(sets.members(false, false).contains(internet.external()), sets.members(false, false));
    // Another server named: redirected to the proxy all the same (nothing listens on port 53 there).
    TestSandboxes.Result ns = TestSandboxes.run(c, T, "/bin/busybox", "nslookup", "api.flotilla.test", internet.otherExternal());
    assertTrue(ns.stdout().contains(internet.external()), "answered by the proxy: " + ns);
    // A denied name's address is refused once looked up, though the allow list names the address.
    assertReaches(c, internet.url(internet.otherExternal(), "index.html"));
    internet.dns.put("bad.flotilla.test", internet.otherExternal());
    assertRefused(c, "http://bad.flotilla.test:" + TestInternet.HTTP_PORT + "/index.html");
    assertTrue(sets.members(true, false).contains(internet.otherExternal()), sets.members(true, false));
  }

  private static String asSandbox(long uid, String url) {
    return TestInternet.exec("setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups", "busybox", "wget", "-q", "-O", "-", url);
  }

  @Test
  void theNodesOwnPortsAndProtectedEndpointsAreUnreachableEvenWithAllowEverything() throws Exception {
    sandboxes(internet.otherExternal() + ":" + TestInternet.HTTP_PORT);
    Vm vm = sandboxes.start(egress("0.0.0.0/0,::/0", ""));
    AgentClient c = sandboxes.connect(vm);
    int port = nodePort.port();
    assertReaches(c, internet.url(internet.external(), "index.html"));
    assertRefused(c, internet.url(internet.otherExternal(), "index.html")); // protected endpoint
    for (String host : List.of(internet.hostEnd(), "127.0.0.1", hostPrimaryAddress())) {
      TestSandboxes.Result r = wget(c, "http://" + host + ":" + port + "/");
      assertFalse(r.stdout().contains("node-secret"), "the node's port on " + host + " answered: " + r);
    }
    // The node's end of the link is a local address of the host: refused by the rules (not by topology).
    assertRefused(c, "http://" + internet.hostEnd() + ":" + port + "/");
    // And the rules bind the uid, whatever runs as it in the host's namespace (pasta subverted):
    long uid = ((ProcessVm) vm).network().uid;
    String asRoot = TestInternet.exec("busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:" + port + "/");
    assertTrue(asRoot.contains("node-secret"), "the node's port answers the node: " + asRoot);
    for (String host : List.of("127.0.0.1", internet.hostEnd())) {
      String asSandbox = TestInternet.exec("setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups",
          "busybox", "wget", "-q", "-O", "-", "http://" + host + ":" + port + "/");
      assertFalse(asSandbox.contains("node-secret"), "uid " + uid + " reached the node's port on " + host + ": " + asSandbox);
      assertTrue(asSandbox.contains("refused"), asSandbox);
    }
    String metadata = TestInternet.exec("setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups",
        "busybox", "wget", "-q", "-O", "-", "http://169.254.169.254/");
    assertTrue(metadata.contains("refused"), "metadata address: " + metadata);
  }

  @Test
  void anotherSandboxIsUnreachable() throws Exception {
    sandboxes();
    Vm a = sandboxes.start(egress("0.0.0.0/0", ""));
    Vm b = sandboxes.start(egress("", ""));
    AgentClient ca = sandboxes.connect(a);
    AgentClient cb = sandboxes.connect(b);
    TestSandboxes.run(cb, T, "/bin/sh", "-c", "mkdir -p /tmp/www && echo sandbox-b-secret > /tmp/www/index.html");
    TestSandboxes.spawn(cb, "/bin/busybox", "httpd", "-f", "-p", "8081", "-h", "/tmp/www");
    await().atMost(T).untilAsserted(() ->
        assertTrue(TestSandboxes.run(cb, T, "/bin/busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:8081/").stdout().contains("sandbox-b-secret")));
    for (String host : List.of(internet.hostEnd(), "127.0.0.1", hostPrimaryAddress(), internet.external())) {
      TestSandboxes.Result r = wget(ca, "http://" + host + ":8081/");
      assertFalse(r.stdout().contains("sandbox-b-secret"), "sandbox a reached b's listener via " + host + ": " + r);
    }
  }

  @Test
  void theSandboxsRootCannotTouchTheRules() throws Exception {
    sandboxes();
    Vm vm = sandboxes.start(egress("", internet.otherExternal()));
    AgentClient c = sandboxes.connect(vm);
    long uid = ((ProcessVm) vm).network().uid;
    HostFirewall fw = sandboxes.hypervisor.networks().firewall();
    List<String> before = fw.rules(false, EgressRules.chain(uid));
    assertFalse(before.isEmpty());
    TestSandboxes.Result caps = TestSandboxes.run(c, T, "/bin/sh", "-c", "grep CapEff /proc/self/status");
    long eff = Long.parseLong(caps.stdout().strip().split("\\s+")[1], 16);
    assertEquals(0, eff & (1L << 12), "CAP_NET_ADMIN in the sandbox: " + caps);
    // its own namespace is all it could touch, and not even that without CAP_NET_ADMIN
    TestSandboxes.Result flush = TestSandboxes.run(c, T, "/bin/sh", "-c", "ip link set eth0 down; ip route del default; echo done");
    assertTrue(flush.stderr().toLowerCase().contains("not permitted"), flush.toString());
    assertEquals(before, fw.rules(false, EgressRules.chain(uid)));
    assertRefused(c, internet.url(internet.otherExternal(), "index.html"));
    assertReaches(c, internet.url(internet.external(), "index.html"));
  }

  @Test
  void pastaAndRulesEndWithTheSandboxAndAnAdoptedSandboxKeepsOrRegainsItsPasta() throws Exception {
    sandboxes();
    Vm vm = sandboxes.start(egress("", internet.otherExternal()));
    String prefix = sandboxes.hypervisor.networks().commentPrefix();
    long pasta = ((ProcessVm) vm).network().pastaPid();
    VmHandle handle = vm.handle();
    // a node restart: the new driver adopts the sandbox and keeps its pasta
    ProcessHypervisor node2 = sandboxes.restartNode();
    Vm adopted = sandboxes.track(node2.adopt(handle).orElseThrow());
    assertEquals(pasta, ((ProcessVm) adopted).network().pastaPid());
    AgentClient c = sandboxes.connect(adopted);
    assertReaches(c, internet.url(internet.external(), "index.html"));
    // pasta lost while the node was away: the next adoption attaches a new one, rules re-applied
    ProcessHandle.of(pasta).ifPresent(ProcessHandle::destroyForcibly);
    await().atMost(T).until(() -> !TestSandboxes.alive(pasta));
    ProcessHypervisor node3 = sandboxes.restartNode();
    Vm again = sandboxes.track(node3.adopt(handle).orElseThrow());
    long pasta2 = ((ProcessVm) again).network().pastaPid();
    assertNotEquals(pasta, pasta2);
    assertReaches(c, internet.url(internet.external(), "index.html"));
    assertRefused(c, internet.url(internet.otherExternal(), "index.html"));
    // the adopting node runs the sandbox's DNS proxy again, and the redirect leads to it
    internet.dns.put("www.flotilla.test", internet.external());
    TestSandboxes.Result ns = TestSandboxes.run(c, T, "/bin/busybox", "nslookup", "www.flotilla.test");
    assertTrue(ns.stdout().contains(internet.external()), "DNS after adoption: " + ns);
    long uid = ((ProcessVm) again).network().uid;
    // the sandbox ends: pasta first, then its rules
    again.kill();
    again.exitFuture().get(30, TimeUnit.SECONDS);
    await().atMost(T).until(() -> !TestSandboxes.alive(pasta2));
    assertTrue(node3.networks().firewall().installed(prefix).isEmpty(), "rules of an ended sandbox");
    // (this JVM also holds the earlier "nodes", whose views of the sandbox end it too, concurrently)
    await().atMost(T).until(() -> !new NameSets(uid).present());
    assertTrue(pastaOf(prefix).isEmpty());
  }

  @Test
  void aNodeThatStartsSweepsWhatEndedSandboxesLeft() throws Exception {
    sandboxes();
    Vm vm = sandboxes.start(egress("", ""));
    String prefix = sandboxes.hypervisor.networks().commentPrefix();
    long pasta = ((ProcessVm) vm).network().pastaPid();
    long uid = ((ProcessVm) vm).network().uid;
    // the container dies behind the node's back (its runc and init killed, as with a node that died too)
    for (long p : vm.pids()) ProcessHandle.of(p).ifPresent(ProcessHandle::destroyForcibly);
    ProcessHandle.of(vm.handle().pid()).ifPresent(ProcessHandle::destroyForcibly);
    // ... and nothing of this JVM's driver saw it end: simulate by re-installing what it removed
    vm.exitFuture().get(30, TimeUnit.SECONDS);
    assertFalse(TestSandboxes.alive(pasta), "the driver that watched it ended its pasta");
    // leftovers of a driver that did not watch: a stale rule set of this node
    new HostFirewall().install(new EgressRules(uid, sandboxes.hypervisor.networks().comment("fl-gone-1"), List.of(), List.of(),
        List.of(), List.of(), true));
    assertEquals(1, new HostFirewall().installed(prefix).size());
    // ... and a DNS redirect with its sets whose filter rules are gone (a uid of this sandbox's range: no other sandbox's)
    NameSets stale = new NameSets(uid + 1);
    stale.create(true, 16);
    stale.installRedirect(sandboxes.hypervisor.networks().comment("fl-gone-2"), 40053, false);
    assertTrue(stale.present());
    // ... beside a live VM of the node's qemu driver (its own comment prefix): never this driver's to sweep
    String vmComment = "flotilla-qemu:" + prefix.split(":")[1] + ":vm-1";
    NameSets live = new NameSets(uid + 2);
    live.create(true, 16);
    new HostFirewall().install(new EgressRules(uid + 2, vmComment, List.of(), List.of(), List.of(), List.of(), true,
        new EgressRules.NameMatch(40054, false)));
    live.installRedirect(vmComment, 40054, false);
    try {
      ProcessHypervisor node2 = sandboxes.restartNode();
      node2.networks().sweepOnce();
      assertTrue(node2.networks().firewall().installed(prefix).isEmpty(), "stale rules swept");
      assertTrue(!stale.present() && NameSets.installed(prefix).isEmpty(), "stale DNS redirect and sets swept");
      assertEquals(Map.of(uid + 2, vmComment), new HostFirewall().installed("flotilla-qemu:"), "a live VM's rules stay");
      assertEquals(Map.of(uid + 2, vmComment), NameSets.installed("flotilla-qemu:"), "a live VM's DNS redirect stays");
      assertTrue(live.members(false, false).contains("FLSBA4-" + (uid + 2)), "and its sets");
    } finally {
      new HostFirewall().remove(uid + 2, vmComment);
      live.remove();
    }
  }

  @Test
  void egressIsRefusedWhereItCannotBeEnforced() throws Exception {
    sandboxes();
    TestSandboxes s = sandboxes;
    EgressConfig broken = s.hypervisor.config().network().withPasta(Path.of("/nonexistent/pasta"));
    s.hypervisor = new ProcessHypervisor(s.hypervisor.config().withNetwork(broken));
    VmException e = assertThrows(VmException.class, () -> s.hypervisor.prepare(egress("", "")));
    assertTrue(e.getMessage().contains("apt-get install passt") && e.getMessage().contains("setup-host.sh"), e.getMessage());
    VmException bad = assertThrows(VmException.class, () -> s.hypervisor.prepare(egress("10.0.0.1/8", "")));
    assertTrue(bad.getMessage().contains("did you mean 10.0.0.0/8"), bad.getMessage());
  }

  /** Connect-and-fetch latency and throughput through the egress path against the host directly: printed, never asserted. */
  @Test
  void benchmarkEgressAgainstTheHost() throws Exception {
    sandboxes();
    Vm vm = sandboxes.start(egress("", ""));
    AgentClient c = sandboxes.connect(vm);
    String small = internet.url(internet.external(), "index.html");
    String big = internet.url(internet.external(), "big.bin");
    int n = 50;
    String loop = "i=0; while [ $i -lt " + n + " ]; do wget -q -O /dev/null " + small + " || exit 1; i=$((i+1)); done";
    String bigGet = "wget -q -O /dev/null " + big;
    wget(c, small); // warm
    long t0 = System.nanoTime();
    TestSandboxes.Result r = TestSandboxes.run(c, T, "/bin/sh", "-c", loop);
    long sandboxLoop = System.nanoTime() - t0;
    assertEquals(0, r.status().exitCode(), r.toString());
    t0 = System.nanoTime();
    r = TestSandboxes.run(c, Duration.ofMinutes(2), "/bin/sh", "-c", bigGet);
    long sandboxBig = System.nanoTime() - t0;
    assertEquals(0, r.status().exitCode(), r.toString());
    t0 = System.nanoTime();
    String hostOut = TestInternet.exec("sh", "-c", loop.replace("wget", "busybox wget") + " && echo ok");
    long hostLoop = System.nanoTime() - t0;
    assertTrue(hostOut.contains("ok"), hostOut);
    t0 = System.nanoTime();
    hostOut = TestInternet.exec("sh", "-c", "busybox " + bigGet + " && echo ok");
    long hostBig = System.nanoTime() - t0;
    assertTrue(hostOut.contains("ok"), hostOut);
    System.out.printf("BENCH egress: HTTP GET of a 24-byte file (fresh TCP connection + wget process each), %d in a row:"
        + " sandbox via pasta %.2f ms each, host directly %.2f ms each%n", n, sandboxLoop / 1e6 / n, hostLoop / 1e6 / n);
    System.out.printf("BENCH egress: %d MiB GET: sandbox via pasta %.0f MiB/s (%.2f s), host directly %.0f MiB/s (%.2f s)%n",
        TestInternet.BIG_MIB, TestInternet.BIG_MIB / (sandboxBig / 1e9), sandboxBig / 1e9, TestInternet.BIG_MIB / (hostBig / 1e9), hostBig / 1e9);
  }

  private static String hostPrimaryAddress() {
    return TestInternet.hostPrimaryAddress();
  }

  /** pasta processes serving a namespace under this node's run root. */
  private List<Long> pastaOf(String commentPrefix) throws IOException {
    String runRootName = commentPrefix.split(":")[1];
    List<Long> out = new ArrayList<>();
    try (var s = Files.list(Path.of("/proc"))) {
      for (Path p : s.toList()) {
        String n = p.getFileName().toString();
        if (!n.matches("\\d+")) continue;
        long pid = Long.parseLong(n);
        if (!SandboxNetwork.isPasta(pid) || !TestSandboxes.alive(pid)) continue;
        if (String.join(" ", TestSandboxes.argv(pid)).contains("/" + runRootName + "/")) out.add(pid);
      }
    }
    return out;
  }
}
