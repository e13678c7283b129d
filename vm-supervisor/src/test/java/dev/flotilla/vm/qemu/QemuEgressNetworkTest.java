package dev.flotilla.vm.qemu;

import static dev.flotilla.vm.qemu.TestAgent.run;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.vm.Vm;
import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.VmSpec;
import dev.flotilla.vm.net.EgressPolicy;
import dev.flotilla.vm.net.EgressRules;
import dev.flotilla.vm.net.HostFirewall;
import dev.flotilla.vm.net.NameSets;
import dev.flotilla.vm.process.TestInternet;
import dev.flotilla.vm.process.TestSandboxes;
import java.io.IOException;
import java.net.InetAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Egress networking of a real QEMU sandbox (passt behind a virtio-net device, the host's per-uid
 * rules) against "the internet" of {@link TestInternet}, as {@code EgressNetworkTest} does for
 * the process driver. One boot covers the egress cases (TCG: each boot costs seconds of CI);
 * {@code network: none} is covered without a boot of its own: {@link QemuVmTest}'s guest has no
 * network device, and {@link QemuHypervisorTest} checks its command line has none. Every refusal
 * is tested against a destination that does listen, so it can only come from the node's rules.
 *
 * <p>{@code -Dflotilla.bench=true} also prints egress figures from the same guest (lines starting
 * {@code BENCH qemu egress:}; scripts/bench-qemu-egress.sh).
 */
class QemuEgressNetworkTest {
  private static final Duration BOOT = Duration.ofSeconds(90);

  private static QemuConfig base;
  private static Path driverRoot;
  private TestInternet internet;
  private TestInternet.NodePort nodePort;
  private QemuHypervisor hv;
  private Vm vm;
  private AgentClient agent;
  private Path stateRoot;

  @BeforeAll
  static void image() throws IOException {
    driverRoot = Files.createTempDirectory("fl-qemu-net-driver");
    base = TestQemu.config(driverRoot);
    assumeTrue(base.imageBuilt(), "guest image not built in " + base.imageDir() + ": run guest-image/build.sh");
  }

  @AfterAll
  static void dropDriverRoot() {
    QemuJail.deleteTree(driverRoot);
  }

  @BeforeEach
  void setUp() throws Exception {
    stateRoot = Files.createTempDirectory("fl-qemu-net");
    internet = TestInternet.create();
    nodePort = new TestInternet.NodePort();
    // the test's DNS server is the node's resolver; no refresh during the test
    hv = TestQemu.hypervisor(base.withNetwork(base.network().withDnsServers(List.of(InetAddress.getByName(internet.hostEnd())))
        .withRefresh(Duration.ofHours(1))).withTemplateCacheBytes(4L << 30));
  }

  @AfterEach
  void tearDown() throws Exception {
    if (agent != null) agent.close();
    if (vm != null) {
      vm.kill();
      vm.exitFuture().orTimeout(20, TimeUnit.SECONDS).exceptionally(e -> null).join();
      Path console = vm.handle().stateDir().resolve("console.log");
      if (Files.exists(console)) System.out.println("---- console ----\n" + Files.readString(console));
      Path passtLog = vm.handle().stateDir().resolve(QemuNetwork.LOG_FILE);
      if (Files.exists(passtLog)) System.out.println("---- passt ----\n" + Files.readString(passtLog));
    }
    try (Stream<Path> files = Files.walk(stateRoot)) {
      for (Path h : files.filter(f -> f.getFileName().toString().equals(VmHandle.FILE_NAME)).toList()) {
        hv.reap(VmHandle.load(h.getParent()));
      }
    }
    hv.shutdown(Duration.ofSeconds(10));
    for (QemuTemplates.Saved t : hv.templateStore().saved()) {
      hv.ids().release(dev.flotilla.vm.ids.IdRangeAllocator.DRIVER_PREFIX + "template." + t.id());
    }
    if (nodePort != null) nodePort.close();
    if (internet != null) internet.close();
    // nothing of this test's VM is left on the host: no rules, no passt
    HostFirewall fw = new HostFirewall();
    Map<Long, String> left = fw.installed(hv.egressCommentPrefix());
    for (var e : left.entrySet()) fw.remove(e.getKey(), e.getValue());
    Map<Long, String> redirects = NameSets.installed(hv.egressCommentPrefix());
    for (long uid : redirects.keySet()) new NameSets(uid).remove();
    List<Long> passt = passtOf(stateRoot);
    passt.forEach(p -> ProcessHandle.of(p).ifPresent(ProcessHandle::destroyForcibly));
    try (Stream<Path> files = Files.walk(stateRoot)) {
      files.sorted(Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
    }
    assertTrue(left.isEmpty(), "rules left behind: " + left);
    assertTrue(redirects.isEmpty(), "DNS redirects left behind: " + redirects);
    assertTrue(passt.isEmpty(), "passt left behind: " + passt);
  }

  /**
   * busybox wget under a 4 s timeout, in the guest, of every url at once (a refusal costs the
   * timeout; TCG costs enough already): the output and exit code of each. As with pasta, passt
   * 2023-03 does not pass a refused connect on as a reset: a refused destination looks like one
   * that never answers, so refusal is "no answer in 4 s" where an allowed destination answers at
   * once; the exact refusal (ECONNREFUSED) is checked on the host, as the sandbox's uid.
   */
  private Map<String, String> wget(List<String> urls) throws Exception {
    return wget(agent, urls);
  }

  private static Map<String, String> wget(AgentClient agent, List<String> urls) throws Exception {
    StringBuilder script = new StringBuilder();
    for (int i = 0; i < urls.size(); i++) {
      script.append("(timeout 4 wget -q -O - ").append(urls.get(i)).append(" >/tmp/w").append(i).append(" 2>&1; echo \" exit=$?\" >>/tmp/w")
          .append(i).append(") & ");
    }
    script.append("wait; for i in");
    for (int i = 0; i < urls.size(); i++) script.append(' ').append(i);
    script.append("; do echo \"@@ $i\"; cat /tmp/w$i; done");
    String out = run(agent, script.toString()).output();
    Map<String, String> results = new java.util.LinkedHashMap<>();
    String[] parts = out.split("@@ ", -1);
    for (int i = 1; i < parts.length; i++) {
      int nl = parts[i].indexOf('\n');
      results.put(urls.get(Integer.parseInt(parts[i].substring(0, nl).strip())), parts[i].substring(nl + 1));
    }
    assertEquals(urls.size(), results.size(), out);
    return results;
  }

  private static void assertReached(String url, String result) {
    assertTrue(result.contains(TestInternet.HELLO) && result.contains("exit=0"), url + " should answer: " + result);
  }

  private static void assertRefused(String url, String result) {
    assertFalse(result.contains(TestInternet.HELLO) || result.contains(TestInternet.NODE_SECRET), url + " should be refused: " + result);
    assertFalse(result.contains("exit=0"), url + " should fail: " + result);
  }

  @Test
  void aQemuGuestReachesWhatThePolicyAllowsThroughPasstAndNothingOfTheNode() throws Exception {
    internet.dns.put("www.flotilla.test", internet.external());
    // allowed: a name only (its address only once the guest looked it up); denied: an address, and
    // a name looked up at the end (bad.flotilla.test, not known yet: the node resolves nothing of it)
    VmSpec spec = new VmSpec("qnet", 1, 1, 256, 0, stateRoot.resolve("qnet"),
        Map.of(EgressPolicy.NETWORK, "egress", EgressPolicy.ALLOW, "www.flotilla.test",
            EgressPolicy.DENY, internet.otherExternal() + ",bad.flotilla.test"));
    // the guest is a template's clone: what follows holds for it as for a cold boot (QemuNodeIT
    // boots one cold). The template's own network reached nothing; the clone's rules are its own.
    QemuTemplates.Saved template = hv.templateFor(spec);
    vm = hv.prepare(spec);
    assertEquals(template.id(), vm.handle().extra().get(QemuHypervisor.TEMPLATE), "a clone: " + vm.handle().extra());
    vm.start(Duration.ofSeconds(30));
    agent = AgentClients.connect(vm.agentAddress(), Duration.ofSeconds(10));
    agent.handshake("qnet", 1, BOOT).get();
    QemuNetwork net = ((QemuVm) vm).network();
    long uid = Long.parseLong(vm.handle().extra().get("uid"));

    // passt runs as QEMU's own uid, in the node's network namespace, where that uid's rules apply
    assertEquals(List.of(Long.toString(uid)), TestSandboxes.status(net.passtPid(), "Uid").subList(0, 1), "passt's uid");
    assertEquals(Files.readSymbolicLink(Path.of("/proc/self/ns/net")), Files.readSymbolicLink(Path.of("/proc/" + net.passtPid() + "/ns/net")));
    assertFalse(new HostFirewall().rules(false, EgressRules.chain(uid)).isEmpty(), "the uid's chain");

    // the guest: one virtio-net interface, configured by its init as the node said
    TestAgent.Result ip = run(agent, "ls /sys/class/net; ip -4 addr show eth0; ip route; cat /etc/resolv.conf");
    assertTrue(ip.output().contains("eth0") && ip.output().contains("10.0.2.15/24") && ip.output().contains("default via 10.0.2.2"), ip.output());
    assertTrue(ip.output().contains("nameserver " + hv.config().network().dnsForwardAddress().getHostAddress()), ip.output());

    // host names are matched at connection time: before the guest looks the allowed name up, its
    // address is not allowed (as the sandbox's uid on the host) and not in the uid's allow set
    NameSets sets = new NameSets(uid);
    String allowed = internet.url(internet.external(), "index.html");
    assertFalse(sets.members(false, false).contains(internet.external()), sets.members(false, false));
    assertTrue(asSandbox(uid, allowed).contains("refused"), "not looked up yet: refused");
    // the guest's lookup (its resolv.conf's server, which passt forwards as the uid) is answered by
    // the sandbox's DNS proxy, which grants the address at that moment. (-type=a: busybox nslookup,
    // asking A and AAAA at once, was seen to take the AAAA reply, which the proxy sends while the A
    // answer waits for its grant, for the A one, print no address and ask AAAA again.)
    TestAgent.Result ns = run(agent, "nslookup -type=a www.flotilla.test 2>&1");
    assertTrue(ns.output().contains(internet.external()), "DNS resolves inside the guest: " + ns);
    assertTrue(sets.members(false, false).contains(internet.external()), "granted at lookup time: " + sets.members(false, false));
    // any other server named: redirected to the proxy all the same (nothing listens on port 53 there)
    TestAgent.Result other = run(agent, "nslookup -type=a www.flotilla.test " + internet.otherExternal() + " 2>&1");
    assertTrue(other.output().contains(internet.external()), "answered by the proxy: " + other);
    // allowed now: the external host, by the address looked up and by the name
    String byName = "http://www.flotilla.test:" + TestInternet.HTTP_PORT + "/index.html";
    // denied: the other external host, which does listen
    String denied = internet.url(internet.otherExternal(), "index.html");
    // the node: its port on every address of the host, loopback, and the gateway the guest is given
    int port = nodePort.port();
    List<String> node = new java.util.ArrayList<>();
    for (String host : List.of(internet.hostEnd(), TestInternet.hostPrimaryAddress(), "127.0.0.1", QemuNetwork.GATEWAY)) {
      node.add("http://" + host + ":" + port + "/");
    }
    List<String> urls = new java.util.ArrayList<>(List.of(allowed, byName, denied));
    urls.addAll(node);
    Map<String, String> got = wget(urls);
    assertReached(allowed, got.get(allowed));
    assertReached(byName, got.get(byName));
    assertRefused(denied, got.get(denied));
    for (String u : node) assertRefused(u, got.get(u));
    // ... refused by the rules, not by topology: the same uid on the host is refused at once
    assertTrue(TestInternet.exec("busybox", "wget", "-q", "-O", "-", "http://127.0.0.1:" + port + "/").contains(TestInternet.NODE_SECRET));
    for (String host : List.of("127.0.0.1", internet.hostEnd())) {
      String asSandbox = asSandbox(uid, "http://" + host + ":" + port + "/");
      assertTrue(asSandbox.contains("refused") && !asSandbox.contains(TestInternet.NODE_SECRET), host + ": " + asSandbox);
    }

    if (Boolean.getBoolean("flotilla.bench")) benchmark();

    // a fork (a snapshot of the running guest, which runs on) restores with a network of its own:
    // its own passt, which the restored virtio-net device connects to, and rules made from its
    // policy for its own uid. What the source looked up is not granted to the fork until it looks
    // the name up itself.
    Path forkDir = stateRoot.resolve("snapshots/qnet-fork");
    vm.snapshot(forkDir);
    Map<String, String> forkOptions = new java.util.HashMap<>(spec.options());
    forkOptions.put(VmSpec.RESTORE_FROM, forkDir.toString());
    Vm fork = hv.prepare(new VmSpec("qnet-fork", 1, 1, 256, 0, stateRoot.resolve("qnet-fork"), forkOptions));
    try {
      fork.start(Duration.ofSeconds(60));
      try (AgentClient forked = AgentClients.connect(fork.agentAddress(), Duration.ofSeconds(10))) {
        assertEquals("qnet-fork", forked.handshake("qnet-fork", 1, BOOT).get().sandboxId());
        QemuNetwork forkNet = ((QemuVm) fork).network();
        long forkUid = Long.parseLong(fork.handle().extra().get("uid"));
        assertNotEquals(uid, forkUid, "the fork's own uid");
        assertNotEquals(net.passtPid(), forkNet.passtPid(), "the fork's own passt");
        assertEquals(List.of(Long.toString(forkUid)), TestSandboxes.status(forkNet.passtPid(), "Uid").subList(0, 1));
        List<String> forkRules = new HostFirewall().rules(false, EgressRules.chain(forkUid));
        assertTrue(forkRules.stream().anyMatch(r -> r.contains(internet.otherExternal())), "its policy's deny list: " + forkRules);
        assertFalse(new NameSets(forkUid).members(false, false).contains(internet.external()), "the source's grant is not the fork's");
        TestAgent.Result forkNs = run(forked, "nslookup -type=a www.flotilla.test 2>&1");
        assertTrue(forkNs.output().contains(internet.external()), "the fork's DNS: " + forkNs);
        Map<String, String> forkGot = wget(forked, List.of(allowed, denied, node.get(0)));
        assertReached(allowed, forkGot.get(allowed));
        assertRefused(denied, forkGot.get(denied));
        assertRefused(node.get(0), forkGot.get(node.get(0)));
        // and the source's network is untouched by its fork
        assertReached(allowed, wget(List.of(allowed)).get(allowed));
      }
    } finally {
      QemuNetwork forkNet = ((QemuVm) fork).network();
      long forkPasst = forkNet == null ? -1 : forkNet.passtPid();
      fork.kill();
      fork.exitFuture().get(30, TimeUnit.SECONDS);
      if (forkPasst > 0) await().atMost(Duration.ofSeconds(30)).until(() -> !TestSandboxes.alive(forkPasst));
    }

    // a node restart while someone flushed the rules: the new node adopts the VM from its handle,
    // keeps its passt and puts the rules back before anything else, with a DNS proxy of its own
    HostFirewall fw = new HostFirewall();
    List<String> rules = fw.rules(false, EgressRules.chain(uid));
    assertTrue(rules.stream().anyMatch(r -> r.contains(internet.otherExternal())), "the deny list in the uid's chain: " + rules);
    assertTrue(fw.remove(uid, net.comment));
    assertTrue(fw.rules(false, EgressRules.chain(uid)).isEmpty());
    QemuHypervisor node2 = TestQemu.hypervisor(hv.config());
    Vm adopted = node2.adopt(VmHandle.load(vm.handle().stateDir())).orElseThrow();
    QemuNetwork net2 = ((QemuVm) adopted).network();
    assertEquals(net.passtPid(), net2.passtPid());
    int oldProxy = net.rules().nameMatch().proxyPort();
    int newProxy = net2.rules().nameMatch().proxyPort();
    assertTrue(oldProxy != newProxy, "the adopting node's own proxy");
    assertEquals(rules.stream().map(r -> r.replace("--dport " + oldProxy + " ", "--dport " + newProxy + " ")).toList(),
        fw.rules(false, EgressRules.chain(uid)), "the same rules, re-applied by the adopting node for its proxy");
    String redirect = TestInternet.exec("iptables", "-w", "-t", "nat", "-S", NameSets.natChain(uid));
    assertTrue(redirect.contains("--to-ports " + newProxy), "the uid's DNS redirected to the adopting node's proxy: " + redirect);
    assertTrue(sets.members(false, false).contains(internet.external()), "the grants stay: " + sets.members(false, false));
    // the name still works: looked up again through the adopting node's proxy
    assertReached(byName, wget(List.of(byName)).get(byName));

    // a denied name: refused from the moment the guest looks it up, though the allowed name's
    // lookup granted the same address
    internet.dns.put("bad.flotilla.test", internet.external());
    TestAgent.Result bad = run(agent, "nslookup -type=a bad.flotilla.test 2>&1");
    assertTrue(bad.output().contains(internet.external()), "the proxy answers a denied name (its address refused): " + bad);
    assertTrue(sets.members(true, false).contains(internet.external()), sets.members(true, false));
    String badUrl = "http://bad.flotilla.test:" + TestInternet.HTTP_PORT + "/index.html";
    Map<String, String> after = wget(List.of(badUrl, allowed));
    assertRefused(badUrl, after.get(badUrl));
    assertRefused(allowed, after.get(allowed));

    // the VM ends (stopped by the node that adopted it): passt with it, then its rules
    long passt = net.passtPid();
    adopted.kill();
    adopted.exitFuture().get(30, TimeUnit.SECONDS);
    vm.exitFuture().get(30, TimeUnit.SECONDS);
    await().atMost(Duration.ofSeconds(30)).until(() -> !TestSandboxes.alive(passt));
    assertTrue(new HostFirewall().installed(hv.egressCommentPrefix()).isEmpty(), "rules of an ended VM");
    assertTrue(new HostFirewall().rules(false, EgressRules.chain(uid)).isEmpty(), "the uid's chain is gone");
    assertFalse(sets.present(), "its DNS redirect and sets are gone");
  }

  private static String asSandbox(long uid, String url) {
    return TestInternet.exec("setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups", "busybox", "wget", "-q", "-O", "-", url);
  }

  /**
   * Connect-and-fetch latency and throughput from the guest through passt against the host
   * directly: printed, never asserted. Latency: one busybox wget fetching the same small file 50
   * times (it opens a fresh TCP connection per URL and keeps none alive), so process start-up,
   * which TCG makes slow, is paid once, not per connection; timed from the node around the exec.
   */
  private void benchmark() throws Exception {
    String small = internet.url(internet.external(), "index.html");
    String big = internet.url(internet.external(), "big.bin");
    int n = 50;
    String many = "wget -q -O /dev/null" + (" " + small).repeat(n);
    String one = "wget -q -O /dev/null " + small;
    run(agent, one); // warm
    long t0 = System.nanoTime();
    TestAgent.Result r = run(agent, many);
    long guestMany = System.nanoTime() - t0;
    assertEquals(0, r.status().exitCode(), r.toString());
    t0 = System.nanoTime();
    r = run(agent, one);
    long guestOne = System.nanoTime() - t0;
    assertEquals(0, r.status().exitCode(), r.toString());
    t0 = System.nanoTime();
    r = run(agent, "wget -q -O /dev/null " + big);
    long guestBig = System.nanoTime() - t0;
    assertEquals(0, r.status().exitCode(), r.toString());
    t0 = System.nanoTime();
    String hostOut = TestInternet.exec("sh", "-c", "busybox " + many + " && echo ok");
    long hostMany = System.nanoTime() - t0;
    assertTrue(hostOut.contains("ok"), hostOut);
    t0 = System.nanoTime();
    hostOut = TestInternet.exec("sh", "-c", "busybox " + one + " && echo ok");
    long hostOne = System.nanoTime() - t0;
    assertTrue(hostOut.contains("ok"), hostOut);
    t0 = System.nanoTime();
    hostOut = TestInternet.exec("sh", "-c", "busybox wget -q -O /dev/null " + big + " && echo ok");
    long hostBig = System.nanoTime() - t0;
    assertTrue(hostOut.contains("ok"), hostOut);
    String accel = vm.handle().extra().get("accel");
    // (many - one) / (n - 1): the per-connection cost without the process start and the exec's own round trip
    System.out.printf("BENCH qemu egress (%s): TCP connect + HTTP GET of a 24-byte file, %d in one wget: guest via passt %.2f ms each,"
            + " host directly %.2f ms each (one wget with one GET, exec round trip included: guest %.0f ms, host %.1f ms)%n",
        accel, n, (guestMany - guestOne) / 1e6 / (n - 1), (hostMany - hostOne) / 1e6 / (n - 1), guestOne / 1e6, hostOne / 1e6);
    System.out.printf("BENCH qemu egress (%s): %d MiB GET: guest via passt %.1f MiB/s (%.2f s), host directly %.0f MiB/s (%.2f s)%n",
        accel, TestInternet.BIG_MIB, TestInternet.BIG_MIB / (guestBig / 1e9), guestBig / 1e9,
        TestInternet.BIG_MIB / (hostBig / 1e9), hostBig / 1e9);
    // lookups through the sandbox's DNS proxy, each a wget by name (the lookup and one GET), in a
    // row: a lookup lost on the way (the guest's resolver asks again after 5 s) shows as a slow one
    String byName = "http://www.flotilla.test:" + TestInternet.HTTP_PORT + "/index.html";
    int lookups = 200;
    List<Long> millis = new java.util.ArrayList<>();
    int failed = 0;
    for (int i = 0; i < lookups; i++) {
      long s0 = System.nanoTime();
      TestAgent.Result w = run(agent, "wget -q -O /dev/null " + byName);
      millis.add((System.nanoTime() - s0) / 1_000_000);
      if (w.status().exitCode() != 0) failed++;
    }
    List<Long> sorted = millis.stream().sorted().toList();
    System.out.printf("BENCH qemu egress (%s): %d wgets by name in a row (a lookup through the DNS proxy and one GET each): median %d ms,"
            + " p99 %d ms, max %d ms; %d over 4 s, %d failed%n",
        accel, lookups, sorted.get(lookups / 2), sorted.get(lookups * 99 / 100), sorted.get(lookups - 1),
        millis.stream().filter(m -> m > 4000).count(), failed);
  }

  /** passt processes whose socket lies under {@code root}. */
  private static List<Long> passtOf(Path root) throws IOException {
    try (Stream<Path> s = Files.list(Path.of("/proc"))) {
      return s.map(p -> p.getFileName().toString()).filter(n -> n.matches("\\d+")).map(Long::parseLong)
          .filter(pid -> TestSandboxes.alive(pid) && String.join(" ", TestSandboxes.argv(pid)).contains(root + "/")
              && String.join(" ", TestSandboxes.argv(pid)).contains("--socket"))
          .toList();
    }
  }
}
