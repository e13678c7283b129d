package dev.flotilla.vm.process;

import dev.flotilla.vm.net.EgressPolicy;
import dev.flotilla.vm.net.EgressRules;
import dev.flotilla.vm.net.PastaCommand;
import dev.flotilla.vm.net.SandboxRules;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The egress network of one incarnation of a process-driver sandbox: its host side shared with
 * the qemu driver ({@link SandboxRules}: its firewall rules, {@link EgressRules}, installed before
 * the container runs and re-applied by {@link SandboxNetworks}' refresh, and its DNS proxy with its
 * sets and redirect, {@link dev.flotilla.vm.net.SandboxDns}: host names matched at connection time;
 * started again by a node that adopts the sandbox) and
 * its pasta process ({@link PastaCommand}, attached once the container exists), all removed when
 * the sandbox ends: pasta first, so it never runs without its rules.
 *
 * <p>Node-only record: {@code <state dir>/network.properties} holds the policy (an adopted
 * sandbox has no spec) and pasta's pid and start time. In the incarnation's run directory,
 * {@code net/} (the sandbox's uid, 0700, never mounted into the sandbox) holds the node's bind
 * mounts of the sandbox's user and network namespaces, which pasta opens, and pasta's pid file,
 * which the node reads only as "pasta is ready", never as a pid to act on.
 */
final class SandboxNetwork {
  private static final Logger log = LoggerFactory.getLogger(SandboxNetwork.class);
  static final String STATE_FILE = "network.properties";
  static final String PASTA_LOG = "pasta.log";

  private final SandboxNetworks networks;
  private final ProcessVm.Places places;
  private final String sandboxId;
  final long uid;
  final EgressPolicy policy;
  private volatile long pastaPid;
  private volatile long pastaStart;
  private volatile Process pasta; // when this JVM started it
  private final SandboxRules rules;
  private volatile boolean closed;

  SandboxNetwork(SandboxNetworks networks, ProcessVm.Places places, String sandboxId, long uid, EgressPolicy policy) {
    this.networks = networks;
    this.places = places;
    this.sandboxId = sandboxId;
    this.uid = uid;
    this.policy = policy;
    this.rules = networks.rules(sandboxId, uid, comment(), policy);
  }

  Path netDir() {
    return places.incDir().resolve("net");
  }

  Path netnsFile() {
    return netDir().resolve("netns");
  }

  Path usernsFile() {
    return netDir().resolve("userns");
  }

  Path readyFile() {
    return netDir().resolve("pasta.pid");
  }

  /** The resolv.conf the sandbox gets read-only at /etc/resolv.conf: the address pasta maps to the node's resolver. */
  Path resolvConf() {
    return places.incDir().resolve("resolv.conf");
  }

  String comment() {
    return networks.comment(places.containerId());
  }

  long pastaPid() {
    return pastaPid;
  }

  /** Before the container runs: the record, the resolv.conf, the rules. */
  void prepare() throws IOException {
    save();
    Path tmp = places.incDir().resolve("resolv.conf.tmp");
    Files.writeString(tmp, "nameserver " + networks.config().dnsForwardAddress().getHostAddress() + "\n", StandardCharsets.UTF_8);
    Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rw-r--r--"));
    Files.move(tmp, resolvConf(), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    applyRules(true);
  }

  /**
   * Starts the DNS proxy if this node has none for the sandbox (an adopted one keeps the grants
   * in its sets), resolves the deny list's names again and installs the rules (one atomic replace
   * per family) and the DNS redirect: {@link SandboxRules#apply}, as for a VM.
   */
  void applyRules() throws IOException {
    applyRules(false);
  }

  private void applyRules(boolean fresh) throws IOException {
    if (closed) return;
    rules.apply(fresh);
  }

  /** Its rules and DNS proxy, which the driver's refresh re-applies once registered. */
  SandboxRules rules() {
    return rules;
  }

  /**
   * Attaches pasta to the network namespace of the container whose init is {@code initPid} (the
   * node's view, from runc), and waits until pasta has configured it.
   */
  void attach(long initPid, Duration timeout) throws IOException {
    Path net = netDir();
    if (!Files.isDirectory(net, LinkOption.NOFOLLOW_LINKS)) {
      Files.createDirectory(net, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
      Files.setAttribute(net, "unix:uid", (int) uid, LinkOption.NOFOLLOW_LINKS);
      Files.setAttribute(net, "unix:gid", (int) uid, LinkOption.NOFOLLOW_LINKS);
    }
    bindNamespace(initPid, "net", netnsFile());
    bindNamespace(initPid, "user", usernsFile());
    Files.deleteIfExists(readyFile());
    Path upstream = places.incDir().resolve("upstream-resolv.conf");
    Files.writeString(upstream, networks.upstreamResolvConf(), StandardCharsets.UTF_8);
    List<String> cmd = PastaCommand.of(networks.config().pasta(), upstream, usernsFile(), netnsFile(), readyFile(),
        networks.config().dnsForwardAddress());
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(places.stateDir().resolve(PASTA_LOG).toFile()))
        .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
    pb.environment().clear();
    pb.environment().put("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    Process p = pb.start();
    pasta = p;
    pastaPid = p.pid();
    pastaStart = Procfs.startTime(p.pid()).orElse(0);
    save();
    long until = System.nanoTime() + timeout.toNanos();
    while (!Files.exists(readyFile(), LinkOption.NOFOLLOW_LINKS)) {
      if (!p.isAlive()) throw new IOException("pasta exited with " + p.exitValue() + ": " + logTail());
      if (System.nanoTime() > until) {
        killPasta();
        throw new IOException("pasta did not configure the sandbox's network within " + timeout.toMillis() + " ms: " + logTail());
      }
      try {
        Thread.sleep(5);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        killPasta();
        throw new IOException("interrupted while attaching pasta");
      }
    }
  }

  private static void bindNamespace(long pid, String ns, Path file) throws IOException {
    if (Mounts.isMountPoint(file)) Mounts.unmount(file);
    Files.deleteIfExists(file);
    Files.createFile(file);
    Mounts.run("mount", "--bind", "/proc/" + pid + "/ns/" + ns, file.toString());
  }

  /** pasta as recorded is still the process the node started. */
  boolean pastaAlive() {
    return pastaPid > 0 && Procfs.isSameProcess(pastaPid, pastaStart) && isPasta(pastaPid);
  }

  static boolean isPasta(long pid) {
    return Procfs.commandName(pid).map(n -> n.startsWith("pasta") || n.startsWith("passt") || n.equals("nsenter") || n.equals("setsid")
            || n.equals("unshare") || n.equals("sh"))
        .orElse(false);
  }

  /** Kills pasta (if it is still the one recorded) and waits until it is gone. */
  void killPasta() {
    if (!PastaCommand.killAndAwait(pasta, pastaPid, this::pastaAlive)) {
      log.error("sandbox {}: pasta (pid {}) did not die within 10 s of SIGKILL", sandboxId, pastaPid);
    }
  }


  /**
   * Ends the network: pasta first (a sandbox without pasta has no network), then its DNS proxy and
   * rules, and its redirect and sets (only if they are still this incarnation's), then the
   * namespace bind mounts.
   */
  synchronized void close() {
    if (closed) return;
    closed = true;
    rules.stop();
    killPasta();
    if (pastaAlive()) return; // keep the rules of a pasta that would not die
    rules.remove(); // the proxy, the rules if still this incarnation's, then its redirect and sets
    for (Path f : List.of(netnsFile(), usernsFile())) {
      try {
        Mounts.unmount(f);
      } catch (IOException e) {
        log.warn("sandbox {}: cannot unmount {}: {}", sandboxId, f, e.getMessage());
      }
    }
  }

  private void save() throws IOException {
    Properties p = new Properties();
    policy.toOptions().forEach(p::setProperty);
    p.setProperty("uid", Long.toString(uid));
    p.setProperty("pasta.pid", Long.toString(pastaPid));
    p.setProperty("pasta.start", Long.toString(pastaStart));
    Path tmp = places.stateDir().resolve(STATE_FILE + ".tmp");
    try (var out = Files.newOutputStream(tmp)) {
      p.store(out, "egress network of this incarnation (node-only)");
    }
    Files.move(tmp, places.stateDir().resolve(STATE_FILE), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** The record a node wrote in an incarnation's node-only state dir; empty for a sandbox without egress. */
  static Optional<SandboxNetwork> load(SandboxNetworks networks, ProcessVm.Places places, String sandboxId) {
    Path f = places.stateDir().resolve(STATE_FILE);
    if (!Files.isRegularFile(f, LinkOption.NOFOLLOW_LINKS)) return Optional.empty();
    Properties p = new Properties();
    try (var in = Files.newInputStream(f)) {
      p.load(in);
      Map<String, String> o = new HashMap<>();
      for (String k : List.of(EgressPolicy.NETWORK, EgressPolicy.ALLOW, EgressPolicy.DENY)) {
        if (p.getProperty(k) != null) o.put(k, p.getProperty(k));
      }
      EgressPolicy policy = EgressPolicy.fromOptions(o);
      if (!policy.egress()) return Optional.empty();
      SandboxNetwork n = new SandboxNetwork(networks, places, sandboxId, Long.parseLong(p.getProperty("uid")), policy);
      n.pastaPid = Long.parseLong(p.getProperty("pasta.pid", "0"));
      n.pastaStart = Long.parseLong(p.getProperty("pasta.start", "0"));
      return Optional.of(n);
    } catch (IOException | RuntimeException e) {
      log.warn("sandbox {}: unreadable {}: {}", sandboxId, f, e.getMessage());
      return Optional.empty();
    }
  }

  String logTail() {
    Path f = places.stateDir().resolve(PASTA_LOG);
    try {
      String s = Files.readString(f, StandardCharsets.UTF_8);
      return s.length() > 2048 ? s.substring(s.length() - 2048).strip() : s.strip();
    } catch (IOException e) {
      return "(no log: " + e.getMessage() + ")";
    }
  }
}
