package dev.flotilla.node.local;

import java.io.IOException;
import java.net.InetAddress;
import java.net.NetworkInterface;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A private network for a {@link LocalCluster}: one network namespace per node, each with a veth
 * whose other end is on a bridge in the root namespace. The bridge has {@code 10.A.B.1/24} (where
 * PostgreSQL listens for the nodes and from where the launcher reaches their gRPC ports), node i
 * has {@code 10.A.B.(10+i)}; loopback is up in every namespace.
 *
 * <p>Faults are iptables DROP rules inside the nodes' namespaces (a lost packet, never a RST: the
 * peer sees silence, as on a real partition), in a chain of their own ({@value #CHAIN}) hooked to
 * INPUT and OUTPUT, so healing is flushing that chain and deleting a namespace takes its rules
 * with it: nothing is added to the root namespace's firewall.
 *
 * <p>Why not {@code ip netns exec}: it also unshares the mount namespace and mounts a fresh
 * {@code /sys} over the old one, which hides {@code /sys/fs/cgroup} from the node, so runc could
 * not place a sandbox in its cgroup. The nodes are started with {@code nsenter --net=...}, which
 * switches the network namespace only; everything else of the node (cgroups, runc, mounts, the
 * unix sockets to its sandboxes' agents, /proc) stays on the host as before. Sandboxes get a
 * network namespace of their own from runc either way.
 *
 * <p>Names are unique per cluster (a random 5-hex id: bridge {@code flp<id>b}, veths
 * {@code flp<id>h<i>}/{@code flp<id>n<i>}, namespaces {@code flotilla-<id>-n<i>}) and the subnet is
 * one that no interface or route of this machine uses yet, so clusters of several users can run
 * at once. The bridge's alias records the launcher's pid: {@link #removeStale()} removes only the
 * topologies whose launcher is dead (a SIGKILLed test JVM cannot clean up after itself).
 */
public final class NetworkNamespaces implements AutoCloseable {
  static final String CHAIN = "FLOTILLA-FAULTS";
  private static final String ALIAS = "flotilla-local pid=";
  private static final Duration COMMAND_TIMEOUT = Duration.ofSeconds(20);

  private final String id;
  private final String subnet; // "10.A.B."
  private final int nodes;
  private volatile boolean closed;

  private NetworkNamespaces(String id, String subnet, int nodes) {
    this.id = id;
    this.subnet = subnet;
    this.nodes = nodes;
  }

  /** Creates the bridge, and a namespace and veth per node; on failure removes what it made. */
  static NetworkNamespaces create(int nodes, String owner) throws IOException {
    if (nodes > 200) throw new IllegalArgumentException("at most 200 nodes on one /24");
    removeStale();
    SecureRandom r = new SecureRandom();
    for (int attempt = 0; attempt < 20; attempt++) {
      byte[] raw = new byte[3];
      r.nextBytes(raw);
      String id = HexFormat.of().formatHex(raw).substring(0, 5);
      String subnet = "10." + (200 + r.nextInt(50)) + "." + r.nextInt(256) + ".";
      if (subnetInUse(subnet)) continue;
      NetworkNamespaces n = new NetworkNamespaces(id, subnet, nodes);
      // the bridge first: its name is the lock (ip link add fails if another launcher took it),
      // and its alias names the owner before anything else of this id exists
      if (run("ip", "link", "add", n.bridge(), "type", "bridge") != 0) continue;
      try {
        n.build(owner);
      } catch (IOException | RuntimeException e) {
        n.close();
        throw e;
      }
      return n;
    }
    throw new IOException("no free bridge name and subnet found in 20 attempts");
  }

  private void build(String owner) throws IOException {
    must("ip", "link", "set", bridge(), "alias", ALIAS + ProcessHandle.current().pid() + " " + owner);
    must("ip", "addr", "add", bridgeAddress() + "/24", "dev", bridge());
    must("ip", "link", "set", bridge(), "up");
    for (int i = 1; i <= nodes; i++) {
      String ns = namespace(i);
      must("ip", "netns", "add", ns);
      must("ip", "link", "add", hostVeth(i), "type", "veth", "peer", "name", nodeVeth(i));
      must("ip", "link", "set", nodeVeth(i), "netns", ns);
      must("ip", "link", "set", hostVeth(i), "master", bridge());
      must("ip", "link", "set", hostVeth(i), "up");
      must("ip", "-n", ns, "link", "set", "lo", "up");
      must("ip", "-n", ns, "addr", "add", address(i) + "/24", "dev", nodeVeth(i));
      must("ip", "-n", ns, "link", "set", nodeVeth(i), "up");
      iptables(i, "-N", CHAIN);
      iptables(i, "-I", "INPUT", "-j", CHAIN);
      iptables(i, "-I", "OUTPUT", "-j", CHAIN);
    }
  }

  // ------------------------------------------------------------------------------ names

  String bridge() {
    return "flp" + id + "b";
  }

  private String hostVeth(int i) {
    return "flp" + id + "h" + i;
  }

  private String nodeVeth(int i) {
    return "flp" + id + "n" + i;
  }

  /** Node {@code i}'s network namespace ({@code ip netns list}). */
  public String namespace(int i) {
    return "flotilla-" + id + "-n" + i;
  }

  /** Node {@code i}'s address (1-based). */
  public String address(int i) {
    return subnet + (10 + i);
  }

  /** The bridge's address in the root namespace: PostgreSQL's for the nodes, and the launcher's. */
  public String bridgeAddress() {
    return subnet + "1";
  }

  public String cidr() {
    return subnet + "0/24";
  }

  /** The prefix of every interface name of this topology (for {@code ip link | grep}). */
  public String linkPrefix() {
    return "flp" + id;
  }

  /** The command prefix that runs a program in node {@code i}'s network namespace (and only that). */
  List<String> enter(int i) {
    return List.of("/usr/bin/nsenter", "--net=/run/netns/" + namespace(i), "--");
  }

  // ------------------------------------------------------------------------------ faults

  /** Drops every packet between nodes {@code a} and {@code b}, both ways, until healed. */
  public void cut(int a, int b) {
    cutOneWay(a, b);
    cutOneWay(b, a);
  }

  /**
   * Drops the packets {@code from} sends to {@code to} (at {@code to}'s input: {@code from} sees
   * its sends go out, nothing arrives). The other direction still flows, so TCP on that link works
   * only as far as data that needs no acknowledgement back can go: in practice a one-way cut stalls
   * both directions of each connection within a retransmission timeout, and what the cluster sees
   * is heartbeats of one side still arriving for a moment while the other's do not.
   */
  public void cutOneWay(int from, int to) {
    iptables(to, "-A", CHAIN, "-s", address(from), "-j", "DROP");
  }

  /** Removes every fault of node {@code i}'s namespace (links to other nodes and to PostgreSQL). */
  public void heal(int i) {
    iptables(i, "-F", CHAIN);
  }

  /** Removes every fault of every node. */
  public void healAll() {
    for (int i = 1; i <= nodes; i++) heal(i);
  }

  /** Heals the link between {@code a} and {@code b} (both directions), leaving other faults alone. */
  public void heal(int a, int b) {
    deleteRule(b, "-s", address(a), "-j", "DROP");
    deleteRule(a, "-s", address(b), "-j", "DROP");
  }

  /**
   * Node {@code i} can no longer reach PostgreSQL (the bridge address, {@code port}): its packets
   * to it and PostgreSQL's to it are dropped; its links to the other nodes and to clients stay.
   */
  public void cutFromPostgres(int i, int port) {
    iptables(i, "-A", CHAIN, "-d", bridgeAddress(), "-p", "tcp", "--dport", Integer.toString(port), "-j", "DROP");
    iptables(i, "-A", CHAIN, "-s", bridgeAddress(), "-p", "tcp", "--sport", Integer.toString(port), "-j", "DROP");
  }

  /**
   * Cuts and heals the link between {@code a} and {@code b} (both ways) on a schedule, on a thread
   * of its own, until the returned handle is closed (which heals it): a flapping link.
   */
  public AutoCloseable flap(int a, int b, Duration cutFor, Duration healedFor) {
    java.util.concurrent.atomic.AtomicBoolean on = new java.util.concurrent.atomic.AtomicBoolean(true);
    Thread t = new Thread(() -> {
      while (on.get()) {
        cut(a, b);
        if (!pause(cutFor, on)) break;
        heal(a, b);
        if (!pause(healedFor, on)) break;
      }
      heal(a, b);
    }, "flap-" + a + "-" + b);
    t.setDaemon(true);
    t.start();
    return () -> {
      on.set(false);
      t.interrupt();
      try {
        t.join(COMMAND_TIMEOUT.toMillis());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      heal(a, b);
    };
  }

  /** Sleeps (a schedule, not a wait for a condition); false when the flapping was stopped. */
  private static boolean pause(Duration d, java.util.concurrent.atomic.AtomicBoolean on) {
    try {
      Thread.sleep(d.toMillis());
    } catch (InterruptedException e) {
      return false;
    }
    return on.get();
  }

  /** The rules of node {@code i}'s fault chain, as {@code iptables -S} prints them. */
  public List<String> rules(int i) {
    List<String> out = new ArrayList<>();
    for (String line : output(List.of("/usr/bin/nsenter", "--net=/run/netns/" + namespace(i), "--", "iptables", "-S", CHAIN)).split("\n")) {
      if (line.startsWith("-A ")) out.add(line);
    }
    return out;
  }

  private void deleteRule(int i, String... rule) {
    List<String> cmd = new ArrayList<>(List.of("-D", CHAIN));
    cmd.addAll(List.of(rule));
    // -D of a rule that is not there fails; several copies are removed one by one
    for (int k = 0; k < 10; k++) {
      List<String> full = new ArrayList<>(enter(i));
      full.add("iptables");
      full.addAll(cmd);
      if (run(full.toArray(String[]::new)) != 0) return;
    }
  }

  private void iptables(int i, String... args) {
    List<String> cmd = new ArrayList<>(enter(i));
    cmd.add("iptables");
    // -w: wait for the xtables lock rather than fail when another namespace's rule is being set
    cmd.add("-w");
    cmd.addAll(List.of(args));
    try {
      must(cmd.toArray(String[]::new));
    } catch (IOException e) {
      throw new IllegalStateException(e.getMessage(), e);
    }
  }

  // ------------------------------------------------------------------------------ cleanup

  /** Deletes the namespaces (their rules and veth ends with them), the veths and the bridge. Idempotent. */
  @Override
  public synchronized void close() {
    if (closed) return;
    closed = true;
    removeTopology(id);
  }

  private static void removeTopology(String id) {
    for (String ns : namespaces()) {
      if (ns.startsWith("flotilla-" + id + "-n")) run("ip", "netns", "delete", ns);
    }
    for (String link : links()) {
      if (link.startsWith("flp" + id) && !link.equals("flp" + id + "b")) run("ip", "link", "delete", link);
    }
    run("ip", "link", "delete", "flp" + id + "b");
  }

  /**
   * Removes the topologies of launchers that are gone (their bridge's alias names a dead pid), and
   * namespaces of this naming whose bridge does not exist (a launcher killed while building; the
   * bridge is made first and removed last). Topologies of live launchers, whoever they are, stay.
   */
  public static void removeStale() {
    String shown = output(List.of("ip", "-d", "link", "show"));
    Set<String> liveIds = new LinkedHashSet<>();
    Matcher m = Pattern.compile("^\\d+: flp([0-9a-f]{5})b[:@]", Pattern.MULTILINE).matcher(shown);
    while (m.find()) liveIds.add(m.group(1));
    // one record per interface: its first line up to the next "N: " line
    for (String block : shown.split("\n(?=\\d+: )")) {
      Matcher b = Pattern.compile("^\\d+: flp([0-9a-f]{5})b[:@]").matcher(block);
      if (!b.find()) continue;
      Matcher a = Pattern.compile("alias " + Pattern.quote(ALIAS) + "(\\d+)").matcher(block);
      if (!a.find()) continue; // being built right now, or not ours
      long pid = Long.parseLong(a.group(1));
      if (ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) continue;
      removeTopology(b.group(1));
      liveIds.remove(b.group(1));
    }
    for (String ns : namespaces()) {
      Matcher n = Pattern.compile("^flotilla-([0-9a-f]{5})-n\\d+$").matcher(ns);
      if (n.find() && !liveIds.contains(n.group(1))) run("ip", "netns", "delete", ns);
    }
  }

  private static List<String> namespaces() {
    List<String> out = new ArrayList<>();
    for (String line : output(List.of("ip", "netns", "list")).split("\n")) {
      String name = line.trim().split(" ")[0];
      if (!name.isEmpty()) out.add(name);
    }
    return out;
  }

  private static List<String> links() {
    List<String> out = new ArrayList<>();
    Matcher m = Pattern.compile("^\\d+: ([^:@]+)[:@]", Pattern.MULTILINE).matcher(output(List.of("ip", "-o", "link", "show")));
    while (m.find()) out.add(m.group(1));
    return out;
  }

  /** Whether an interface or route of this machine already uses {@code 10.A.B.}. */
  private static boolean subnetInUse(String subnet) {
    try {
      for (NetworkInterface nif : java.util.Collections.list(NetworkInterface.getNetworkInterfaces())) {
        for (InetAddress a : java.util.Collections.list(nif.getInetAddresses())) {
          if (a.getHostAddress().startsWith(subnet)) return true;
        }
      }
    } catch (java.net.SocketException e) {
      return true;
    }
    String prefix = subnet.substring(0, subnet.length() - 1); // "10.A.B"
    return output(List.of("ip", "-4", "route", "show", "table", "all")).contains(prefix + ".");
  }

  // ------------------------------------------------------------------------------ commands

  private static void must(String... cmd) throws IOException {
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    try {
      Process p = pb.start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!p.waitFor(COMMAND_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IOException(String.join(" ", cmd) + ": no exit within " + COMMAND_TIMEOUT);
      }
      if (p.exitValue() != 0) throw new IOException(String.join(" ", cmd) + " failed (" + p.exitValue() + "): " + out.strip());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted: " + String.join(" ", cmd), e);
    }
  }

  private static int run(String... cmd) {
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
      if (!p.waitFor(COMMAND_TIMEOUT.toSeconds(), TimeUnit.SECONDS)) {
        p.destroyForcibly();
        return -1;
      }
      return p.exitValue();
    } catch (IOException e) {
      return -1;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return -1;
    }
  }

  private static String output(List<String> cmd) {
    try {
      Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      p.waitFor(COMMAND_TIMEOUT.toSeconds(), TimeUnit.SECONDS);
      return out;
    } catch (IOException e) {
      return "";
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return "";
    }
  }
}
