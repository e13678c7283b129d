package dev.flotilla.vm.qemu;

import dev.flotilla.vm.VmHandle;
import dev.flotilla.vm.net.EgressHost;
import dev.flotilla.vm.net.EgressPolicy;
import dev.flotilla.vm.net.EgressRules;
import dev.flotilla.vm.net.SandboxRules;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The egress network of one QEMU incarnation ({@code network: egress}): a virtio-net device whose
 * backend is Debian's {@code passt}, reached over a Unix socket in the VM's run directory
 * ({@code -netdev stream}, QEMU 7.2's native passt transport). passt runs in the node's network
 * namespace as the sandbox's own uid (QEMU's), so the sockets it opens for the guest are that uid's
 * and the same per-uid host firewall chain as a process sandbox's ({@link EgressRules}, rendered by
 * the shared {@link EgressHost}) decides where they may go: the policy is enforced outside the VM,
 * by rules neither the guest nor its QEMU can touch. {@code network: none} adds no device at all.
 * Host names of the lists are matched at connection time by the sandbox's own DNS proxy, as for a
 * process sandbox ({@link SandboxRules} owns it): passt forwards the guest's DNS to the node's
 * resolvers from a socket of the sandbox's uid, which the uid's port-53 redirect sends to the proxy.
 *
 * <p>Why passt and not a tap: a tap needs a device and routing in a network namespace the node
 * configures for each VM, and NAT or a pasta beside it to leave that namespace; passt needs only a
 * socket file in a directory QEMU's jail already has, runs unprivileged, and translates the
 * guest's frames to ordinary sockets of its uid (what the rules match).
 *
 * <p>passt's details: {@code --one-off}, so it ends when QEMU closes the socket (QEMU's end ends
 * it, even with no node watching); {@code -t none -u none}, no port of the host leads into the
 * guest; {@code --no-map-gw}, the gateway is not the host; {@code -4}, IPv4 only (the guest's
 * static configuration below is IPv4). DNS: {@code --dns-forward} maps the resolver address the
 * guest's resolv.conf names to the node's resolver; passt 2023-03 maps it only to one it read from
 * {@code /etc/resolv.conf}, so, as for pasta ({@link dev.flotilla.vm.net.PastaCommand}), passt
 * starts in a private mount namespace where a resolv.conf naming the node's resolvers is bound
 * over {@code /etc/resolv.conf}; then {@code setpriv} drops to the sandbox's uid with no
 * capabilities before passt runs (passt then isolates itself further in namespaces of its own).
 *
 * <p>The guest is configured statically from the kernel command line
 * ({@code flotilla.net=ADDRESS/PREFIX,GATEWAY,DNS}, read by the guest's init) with the same
 * address, gateway and resolver passt is told to offer: no DHCP round trip in the boot (seconds
 * under TCG), and the node, not the guest, decides.
 *
 * <p>The handle's extras record the policy, the rules' comment and passt's pid and start time, so
 * a node that adopts the VM starts a DNS proxy of its own for it, re-applies its rules and keeps
 * refreshing them, and one that reaps it removes them.
 */
final class QemuNetwork {
  private static final Logger LOG = LoggerFactory.getLogger(QemuNetwork.class);

  /** In the run directory (the jail's {@link QemuJail#RUN}). */
  static final String SOCKET = "passt.sock";
  static final String PID_FILE = "passt.pid";
  static final String LOG_FILE = "passt.log";
  /** Where passt sees the run directory (in its own mount namespace): never where the host's resolv.conf lives. */
  static final String PASST_DIR = "/tmp";
  /** The guest's side: slirp's familiar numbers; passt answers ARP for every other address. */
  static final String GUEST_ADDRESS = "10.0.2.15";
  static final int GUEST_PREFIX = 24;
  static final String GATEWAY = "10.0.2.2";

  private static final String X_NETWORK = "network";
  private static final String X_ALLOW = "networkAllow";
  private static final String X_DENY = "networkDeny";
  private static final String X_COMMENT = "egressComment";
  private static final String X_PASST_PID = "passtPid";
  private static final String X_PASST_START = "passtStart";

  private final EgressHost host;
  private final String sandboxId;
  final long uid;
  final EgressPolicy policy;
  final String comment;
  private final Path stateDir;
  private final Path runDir;
  private volatile long passtPid;
  private volatile long passtStart;
  private volatile Process passt; // when this JVM started it
  private final SandboxRules rules;
  private volatile boolean closed;

  QemuNetwork(EgressHost host, String sandboxId, long incarnation, long uid, EgressPolicy policy, Path stateDir, Path runDir,
      String commentPrefix) {
    this(host, sandboxId, uid, policy, comment(commentPrefix, sandboxId, incarnation), stateDir, runDir);
  }

  private QemuNetwork(EgressHost host, String sandboxId, long uid, EgressPolicy policy, String comment, Path stateDir, Path runDir) {
    this.host = host;
    this.sandboxId = sandboxId;
    this.uid = uid;
    this.policy = policy;
    this.comment = comment;
    this.stateDir = stateDir;
    this.runDir = runDir;
    this.rules = new SandboxRules(host, sandboxId, uid, comment, policy);
  }

  /** Marks the rules of one incarnation: the driver's prefix, then the sandbox id (hashed if it would not fit) and incarnation. */
  static String comment(String prefix, String sandboxId, long incarnation) {
    String c = prefix + sandboxId + "-" + incarnation;
    return c.length() <= 200 ? c : prefix + sha256(sandboxId).substring(0, 32) + "-" + incarnation;
  }

  /** The network an adopted or reaped VM's handle records; empty for {@code network: none}. */
  static Optional<QemuNetwork> fromHandle(EgressHost host, VmHandle handle) {
    Map<String, String> x = handle.extra();
    if (!EgressPolicy.Mode.EGRESS.text().equals(x.get(X_NETWORK)) || x.get(X_COMMENT) == null || x.get("uid") == null) {
      return Optional.empty();
    }
    try {
      Map<String, String> o = new HashMap<>();
      o.put(EgressPolicy.NETWORK, x.get(X_NETWORK));
      o.put(EgressPolicy.ALLOW, x.getOrDefault(X_ALLOW, ""));
      o.put(EgressPolicy.DENY, x.getOrDefault(X_DENY, ""));
      Path run = handle.extra().containsKey("qmpSocket") ? Path.of(x.get("qmpSocket")).getParent() : handle.stateDir().resolve("run");
      QemuNetwork n = new QemuNetwork(host, handle.sandboxId(), Long.parseLong(x.get("uid")), EgressPolicy.fromOptions(o),
          x.get(X_COMMENT), handle.stateDir(), run);
      n.passtPid = Long.parseLong(x.getOrDefault(X_PASST_PID, "0"));
      n.passtStart = Long.parseLong(x.getOrDefault(X_PASST_START, "0"));
      return Optional.of(n);
    } catch (RuntimeException e) {
      LOG.warn("sandbox {}: unreadable network in its handle: {}", handle.sandboxId(), e.getMessage());
      return Optional.empty();
    }
  }

  /** The handle with what a later node needs to find this network again. */
  VmHandle record(VmHandle h) {
    Map<String, String> o = policy.toOptions();
    return h.withExtra(X_NETWORK, o.get(EgressPolicy.NETWORK))
        .withExtra(X_ALLOW, o.getOrDefault(EgressPolicy.ALLOW, ""))
        .withExtra(X_DENY, o.getOrDefault(EgressPolicy.DENY, ""))
        .withExtra(X_COMMENT, comment)
        .withExtra(X_PASST_PID, Long.toString(passtPid))
        .withExtra(X_PASST_START, Long.toString(passtStart));
  }

  /** QEMU's device and backend (jail paths). */
  static List<String> qemuArgs() {
    return List.of(
        "-netdev", "stream,id=net0,server=off,addr.type=unix,addr.path=" + QemuJail.RUN + "/" + SOCKET,
        "-device", "virtio-net-device,netdev=net0");
  }

  /** The guest's configuration on the kernel command line, read by its init. */
  String kernelArg() {
    return KERNEL_ARG + guestConfig(host.config());
  }

  /** The kernel argument (with its '=') that tells the guest's init its network. */
  static final String KERNEL_ARG = "flotilla.net=";

  /** The guest's side (address, gateway, resolver): the same for every sandbox of a node. */
  static String guestConfig(dev.flotilla.vm.net.EgressConfig config) {
    return GUEST_ADDRESS + "/" + GUEST_PREFIX + "," + GATEWAY + "," + config.dnsForwardAddress().getHostAddress();
  }

  long passtPid() {
    return passtPid;
  }

  /**
   * passt's argv: what the node spawns (setsid, unshare, sh and setpriv all exec, so its pid is
   * passt's). In its private mount namespace the VM's run directory is bound at {@value #PASST_DIR}:
   * the sandbox's uid cannot reach it through the node-only state directory above it (QEMU reaches
   * it the same way, bound at its jail's /run).
   */
  List<String> command(Path upstream) {
    return new ArrayList<>(List.of("setsid", "unshare", "--mount", "--propagation", "private", "--",
        "sh", "-c", "mount --bind \"$1\" /etc/resolv.conf && mount --bind \"$2\" " + PASST_DIR + " && shift 2 && exec \"$@\"",
        "sh", upstream.toString(), runDir.toString(),
        "setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups", "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--",
        host.config().passt().toString(),
        "--foreground", "--one-off", "--quiet", "-4",
        "--socket", PASST_DIR + "/" + SOCKET, "--pid", PASST_DIR + "/" + PID_FILE,
        "-t", "none", "-u", "none", "--no-map-gw",
        "-a", GUEST_ADDRESS, "-n", Integer.toString(GUEST_PREFIX), "-g", GATEWAY,
        "--dns-forward", host.config().dnsForwardAddress().getHostAddress()));
  }

  /**
   * Before QEMU starts (it connects to passt's socket as it sets up its devices): the DNS proxy and
   * the rules, then passt, waited for until it listens. On failure nothing is left running.
   */
  void start(Duration timeout) throws IOException {
    try {
      startPasst(timeout);
    } catch (IOException | RuntimeException e) {
      close();
      throw e;
    }
  }

  private void startPasst(Duration timeout) throws IOException {
    applyRules();
    Path upstream = stateDir.resolve("upstream-resolv.conf");
    Files.writeString(upstream, host.upstreamResolvConf(), StandardCharsets.UTF_8);
    Files.setPosixFilePermissions(upstream, PosixFilePermissions.fromString("rw-r--r--"));
    Files.deleteIfExists(runDir.resolve(PID_FILE));
    Files.deleteIfExists(runDir.resolve(SOCKET));
    ProcessBuilder pb = new ProcessBuilder(command(upstream)).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(stateDir.resolve(LOG_FILE).toFile()))
        .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
    pb.environment().clear();
    pb.environment().put("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    Process p = pb.start();
    passt = p;
    passtPid = p.pid();
    passtStart = HostProbe.startTime(p.pid()).orElse(0);
    long until = System.nanoTime() + timeout.toNanos();
    // the pid file is written once passt listens: only a readiness signal, never a pid to act on
    while (!Files.exists(runDir.resolve(PID_FILE), LinkOption.NOFOLLOW_LINKS) || !Files.exists(runDir.resolve(SOCKET), LinkOption.NOFOLLOW_LINKS)) {
      if (!p.isAlive()) throw new IOException("passt exited with " + p.exitValue() + ": " + logTail());
      if (System.nanoTime() > until) throw new IOException("passt did not listen within " + timeout.toMillis() + " ms: " + logTail());
      try {
        Thread.sleep(5);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while starting passt");
      }
    }
  }

  /**
   * A new incarnation's: starts its DNS proxy (its sets empty), resolves the deny list's names and
   * installs the rules (one atomic replace per family) and the DNS redirect; refreshed from now on.
   */
  void applyRules() throws IOException {
    if (closed) return;
    rules.apply(true);
    rules.refreshFromNowOn();
  }

  /**
   * An adopted VM's network, as for an adopted process sandbox ({@link SandboxRules#adopt}): a DNS
   * proxy of this node (the sets keep their grants), the rules and the redirect to it re-applied at
   * once (someone may have flushed them), refreshed from now on. If they cannot be, passt is killed:
   * no network rather than an unchecked one.
   */
  void adopted() {
    try {
      rules.adopt();
    } catch (IOException | RuntimeException e) {
      LOG.error("sandbox {}: cannot apply its egress rules on adoption; it keeps no network: {}", sandboxId, e.getMessage());
      killPasst();
    }
  }

  /** Its rules and DNS proxy (tests). */
  SandboxRules rules() {
    return rules;
  }

  /** passt as recorded is still the process the node started. */
  boolean passtAlive() {
    if (passtPid <= 0 || !HostProbe.isSameProcess(passtPid, passtStart)) return false;
    try {
      String comm = Files.readString(Path.of("/proc/" + passtPid + "/comm"), StandardCharsets.UTF_8).strip();
      return comm.startsWith("passt") || List.of("setsid", "unshare", "sh", "setpriv").contains(comm);
    } catch (IOException e) {
      return false;
    }
  }

  /**
   * Ends the network: passt first (it normally went with QEMU's socket), then the DNS proxy and the
   * rules, and then the redirect and sets, only if they are still this incarnation's (a sandbox
   * keeps its uid across incarnations).
   */
  synchronized void close() {
    if (closed) return;
    closed = true;
    rules.stop();
    killPasst();
    if (passtAlive()) {
      LOG.error("sandbox {}: passt (pid {}) did not die within 10 s of SIGKILL: its rules stay", sandboxId, passtPid);
      return;
    }
    rules.remove();
  }

  /** Kills passt (if it is still the one recorded) and waits until it is gone. */
  private void killPasst() {
    dev.flotilla.vm.net.PastaCommand.killAndAwait(passt, passtPid, this::passtAlive);
  }


  String logTail() {
    try {
      String s = Files.readString(stateDir.resolve(LOG_FILE), StandardCharsets.UTF_8);
      return s.length() > 2048 ? s.substring(s.length() - 2048).strip() : s.strip();
    } catch (IOException e) {
      return "(no log: " + e.getMessage() + ")";
    }
  }

  /** What is missing on this host for a QEMU sandbox's egress (empty: nothing). */
  static List<String> missing(EgressHost host) {
    List<String> m = new ArrayList<>();
    if (!Files.isExecutable(host.config().passt())) m.add("no passt at " + host.config().passt() + " (apt-get install passt)");
    m.addAll(host.missingForRules());
    return m;
  }

  private static String sha256(String s) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
