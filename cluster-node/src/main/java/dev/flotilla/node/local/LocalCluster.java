package dev.flotilla.node.local;

import dev.flotilla.node.tls.DevCertificates;
import dev.flotilla.persistence.EmbeddedPostgresServer;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.stream.Stream;

/**
 * A whole Flotilla cluster on this machine: one real PostgreSQL (in this JVM's care) and N node
 * JVMs as child processes sharing it as their journal. Used by {@code flotilla dev-cluster} and
 * by the chaos tests, so there is one way to launch, fault and clean up a local cluster.
 *
 * <p>Layout: everything lives under one short base directory (Unix socket paths must stay under
 * 108 bytes; mode 0711 so the sandboxes' unprivileged roots can reach their state): {@code pg/}
 * the PostgreSQL data, {@code nI/} node I's data dir, {@code nI.log} its stdout+stderr (appended
 * across restarts), {@code cluster.conf} the HOCON every node reads (the shared tenant token and
 * the caller's overrides).
 *
 * <p>Nodes: node 1 is the seed and every node is given its address. A restarted node is given
 * the other running nodes as seeds instead: were node 1 restarted with only itself as seed it
 * would form a second cluster.
 *
 * <p>Faults: {@link #kill} (SIGKILL of the node JVM alone: its sandboxes live on),
 * {@link #killHost} (SIGKILL of the JVM and every sandbox process of its data dir: host loss),
 * {@link #stop} (SIGTERM, graceful), {@link #restart}, {@link #pause}/{@link #resume}
 * (SIGSTOP/SIGCONT), {@link #stopPostgres}/{@link #startPostgres}; with
 * {@link Builder#networkNamespaces} also network partitions: {@link #cut}, {@link #cutOneWay},
 * {@link #flap}, {@link #cutFromPostgres}, {@link #heal()}.
 *
 * <p>No leaks: {@link #close()} (also run by a shutdown hook) stops the nodes, kills every process
 * whose command line names the base directory (sandboxes), and stops PostgreSQL; the node JVMs are
 * spawned with a parent-death SIGKILL, so even a killed launcher takes its nodes down.
 */
public final class LocalCluster implements AutoCloseable {
  public static final String TENANT = "default";
  /** The administration identity's tenant (flotilla.auth.admin-tenants' default). */
  public static final String ADMIN = "admin";
  private static final Duration STOP_TIMEOUT = Duration.ofSeconds(20);
  /**
   * System property: the default of {@link Builder#networkNamespaces} (for fixtures that build
   * their cluster themselves, such as the chaos suite's).
   */
  public static final String NETWORK_NAMESPACES_PROPERTY = "flotilla.local.network-namespaces";

  private final Builder settings;
  private final Path baseDir;
  private final String token;
  private final Path configFile;
  private final List<LocalNode> nodes = new ArrayList<>();
  private final Thread shutdownHook = new Thread(this::closeQuietly, "local-cluster-close");
  private EmbeddedPostgresServer postgres;
  private int postgresPort;
  private NetworkNamespaces network;
  private volatile boolean closed;

  private LocalCluster(Builder settings, Path baseDir, String token, Path configFile) {
    this.settings = settings;
    this.baseDir = baseDir;
    this.token = token;
    this.configFile = configFile;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** What to start; {@link #start()} does it. */
  public static final class Builder {
    private int nodes = 3;
    private Path baseDir;
    private Path nodeJar;
    private Path agentJar;
    private List<String> javaOptions = List.of("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx384m", "-Xss512k");
    private String configOverrides = "";
    private Duration readyTimeout = Duration.ofSeconds(180);
    private boolean deleteOnClose = true;
    private String host = "127.0.0.1";
    private boolean tls;
    private boolean embeddedJournal;
    private boolean networkNamespaces = Boolean.getBoolean(NETWORK_NAMESPACES_PROPERTY);

    public Builder nodes(int n) {
      if (n < 1) throw new IllegalArgumentException("nodes must be >= 1, is " + n);
      this.nodes = n;
      return this;
    }

    /** Where everything goes; default a fresh {@code /tmp/flc*}. Must be short (socket paths). */
    public Builder baseDir(Path dir) {
      this.baseDir = dir;
      return this;
    }

    /** The node jar ({@code cluster-node/target/flotilla.jar}); default: found next to this class. */
    public Builder nodeJar(Path jar) {
      this.nodeJar = jar;
      return this;
    }

    /** The guest agent jar; default: the flotilla.agent.jar property, else found in the repository. */
    public Builder agentJar(Path jar) {
      this.agentJar = jar;
      return this;
    }

    /** JVM flags for every node (default: small heap, C1 only, serial GC: several nodes share few cores). */
    public Builder javaOptions(List<String> options) {
      this.javaOptions = List.copyOf(options);
      return this;
    }

    /** HOCON layered over the node defaults on every node (e.g. failure-detector timings). */
    public Builder config(String hocon) {
      this.configOverrides = hocon;
      return this;
    }

    public Builder readyTimeout(Duration timeout) {
      this.readyTimeout = timeout;
      return this;
    }

    /**
     * TLS (default off): a fresh CA in {@code <base>/tls}, a certificate per node, gRPC over TLS
     * and mutual TLS on Artery. Clients then need {@link #caCert()}.
     */
    public Builder tls(boolean on) {
      this.tls = on;
      return this;
    }

    /**
     * One node on its embedded H2 journal in its data dir, as {@code ./flotilla node} runs, instead
     * of PostgreSQL (which a cluster of several nodes needs).
     */
    public Builder embeddedJournal() {
      this.embeddedJournal = true;
      return this;
    }

    /**
     * Each node in a network namespace of its own, on a private subnet behind a bridge (default:
     * the {@value #NETWORK_NAMESPACES_PROPERTY} system property, else off), so that links between
     * nodes, and between a node and PostgreSQL, can be cut: {@link #cut}, {@link #cutOneWay},
     * {@link #flap}, {@link #cutFromPostgres}, {@link #heal()}. Needs root, {@code ip},
     * {@code nsenter} and {@code iptables}. See {@link NetworkNamespaces}.
     *
     * <p>Without {@link #tls(boolean)} the nodes are told that plaintext gRPC and Artery off
     * loopback are allowed ({@code FLOTILLA_GRPC_ALLOW_PLAINTEXT}, {@code
     * FLOTILLA_CLUSTER_TLS_ALLOW_PLAINTEXT}): the subnet exists only inside this machine (the
     * bridge has no uplink and forwarding is not involved), so it is reachable from exactly where
     * loopback is. With TLS the node certificates carry the node's subnet address.
     */
    public Builder networkNamespaces(boolean on) {
      this.networkNamespaces = on;
      return this;
    }

    /** Remove the base directory on close (default on). Off: the logs and data stay for a look. */
    public Builder deleteOnClose(boolean delete) {
      this.deleteOnClose = delete;
      return this;
    }

    /**
     * Starts PostgreSQL, then all nodes in parallel; returns when every node printed its ready
     * line. On failure everything started is stopped again.
     */
    public LocalCluster start() throws IOException {
      Path base = baseDir != null ? Files.createDirectories(baseDir) : Files.createTempDirectory(Path.of("/tmp"), "flc");
      Files.setPosixFilePermissions(base, PosixFilePermissions.fromString("rwx--x--x"));
      byte[] random = new byte[16];
      new SecureRandom().nextBytes(random);
      String token = "dev-" + HexFormat.of().formatHex(random);
      new SecureRandom().nextBytes(random);
      String adminToken = "adm-" + HexFormat.of().formatHex(random);
      Path conf = base.resolve("cluster.conf");
      // it holds the tokens: the node's user only (the base directory is 0711, its name in /tmp's listing)
      writePrivate(conf,
          "# written by LocalCluster: one token for tenant \"default\" and one for the administration\n"
              + "# identity \"admin\" (nodes, drain), both valid on every node\n"
              + "flotilla.auth.tokens = [ { tenant = \"" + TENANT + "\", token = \"" + token + "\" },"
              + " { tenant = \"" + ADMIN + "\", token = \"" + adminToken + "\" } ]\n"
              + "flotilla.auth.default-token-file = off\n"
              + "flotilla.auth.admin-token-file = off\n"
              + configOverrides + "\n");
      writePrivate(base.resolve("token"), token + "\n");
      writePrivate(base.resolve("admin-token"), adminToken + "\n");
      LocalCluster c = new LocalCluster(this, base, token, conf);
      Runtime.getRuntime().addShutdownHook(c.shutdownHook);
      try {
        c.startAll();
      } catch (IOException | RuntimeException e) {
        c.close();
        throw e;
      }
      return c;
    }
  }

  private void startAll() throws IOException {
    if (settings.embeddedJournal && settings.nodes != 1) {
      throw new IllegalArgumentException("an embedded journal serves one node; " + settings.nodes + " need PostgreSQL");
    }
    if (settings.networkNamespaces) {
      if (settings.embeddedJournal) throw new IllegalArgumentException("network namespaces are for clusters on PostgreSQL");
      network = NetworkNamespaces.create(settings.nodes, baseDir.toString());
    }
    if (!settings.embeddedJournal) {
      postgres = startPostgresOn(0);
      postgresPort = postgres.port();
    }
    Path nodeJar = settings.nodeJar != null ? settings.nodeJar : Jars.nodeJar();
    Path agentJar = settings.agentJar != null ? settings.agentJar : Jars.agentJar(nodeJar);
    // the node's class-data archive first (made once per node jar), then the caller's options
    List<String> javaOptions = new ArrayList<>();
    NodeClassArchive.ensure(nodeJar, agentJar).ifPresent(a -> javaOptions.addAll(NodeClassArchive.jvmOptions(a)));
    javaOptions.addAll(settings.javaOptions);
    DevCertificates certs = settings.tls ? DevCertificates.createCa(baseDir.resolve("tls"), "flotilla-dev-ca") : null;
    List<Integer> ports = Ports.free(2 * settings.nodes);
    for (int i = 1; i <= settings.nodes; i++) {
      Path dir = baseDir.resolve("n" + i);
      Files.createDirectories(dir);
      Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx--x--x"));
      String host = network != null ? network.address(i) : settings.host;
      String jdbcUrl = postgres == null ? ""
          : network != null ? "jdbc:postgresql://" + network.bridgeAddress() + ":" + postgresPort + "/" + EmbeddedPostgresServer.DATABASE
          : postgres.jdbcUrl();
      nodes.add(new LocalNode(i, host, ports.get(2 * (i - 1)), ports.get(2 * (i - 1) + 1), dir,
          baseDir.resolve("n" + i + ".log"), nodeJar, agentJar, javaOptions, configFile,
          jdbcUrl, postgres == null ? "" : postgres.user(), postgres == null ? "" : postgres.password()));
      Map<String, String> env = new TreeMap<>();
      if (certs != null) {
        String name = "n" + i;
        certs.issue(name, DevCertificates.CLUSTER_NAME, List.of(host, "localhost", "127.0.0.1"));
        env.putAll(Map.of(
            "FLOTILLA_GRPC_TLS_CERT", certs.cert(name).toString(), "FLOTILLA_GRPC_TLS_KEY", certs.key(name).toString(),
            "FLOTILLA_CLUSTER_TLS_CERT", certs.cert(name).toString(), "FLOTILLA_CLUSTER_TLS_KEY", certs.key(name).toString(),
            "FLOTILLA_CLUSTER_TLS_CA", certs.caCert().toString()));
      } else if (network != null) {
        // see Builder.networkNamespaces: a subnet only this machine reaches
        env.put("FLOTILLA_GRPC_ALLOW_PLAINTEXT", "on");
        env.put("FLOTILLA_CLUSTER_TLS_ALLOW_PLAINTEXT", "on");
      }
      nodes.get(i - 1).env(env);
      if (network != null) nodes.get(i - 1).enter(network.enter(i));
    }
    String seed = nodes.get(0).arteryAddress();
    for (LocalNode n : nodes) n.spawn(List.of(seed));
    awaitReady(nodes);
  }

  private void awaitReady(List<LocalNode> which) throws IOException {
    List<CompletableFuture<Void>> ready = new ArrayList<>();
    for (LocalNode n : which) {
      ready.add(CompletableFuture.runAsync(() -> {
        try {
          n.awaitReady(settings.readyTimeout);
        } catch (IOException e) {
          throw new UncheckedIOException(e);
        }
      }));
    }
    try {
      CompletableFuture.allOf(ready.toArray(CompletableFuture[]::new)).get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while waiting for the nodes", e);
    } catch (ExecutionException e) {
      Throwable cause = e.getCause() instanceof UncheckedIOException u ? u.getCause() : e.getCause();
      if (cause instanceof IOException io) throw io;
      throw new IOException(cause.getMessage(), cause);
    }
  }

  // ------------------------------------------------------------------------------ accessors

  public List<LocalNode> nodes() {
    return Collections.unmodifiableList(nodes);
  }

  /** Node {@code i}, counting from 1. */
  public LocalNode node(int i) {
    return nodes.get(i - 1);
  }

  /** A file (0600) holding {@link #token()}, for {@code FLOTILLA_TOKEN_FILE}. */
  public Path tokenFile() {
    return baseDir.resolve("token");
  }

  /** The file holding the administration identity's token ({@code nodes}, {@code drain}), mode 0600. */
  public Path adminTokenFile() {
    return baseDir.resolve("admin-token");
  }

  private static void writePrivate(Path file, String content) throws IOException {
    Files.deleteIfExists(file);
    Files.createFile(file, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
    Files.writeString(file, content, StandardCharsets.UTF_8);
  }

  /** Whether the nodes serve TLS (gRPC) and mutual TLS (Artery). */
  public boolean tls() {
    return settings.tls;
  }

  /** The CA that issued every node's certificate ({@code <base>/tls/ca.crt}); clients trust it with {@code --ca}. */
  public Path caCert() {
    return baseDir.resolve("tls").resolve("ca.crt");
  }

  /** The bearer token of tenant "default", valid on every node. */
  public String token() {
    return token;
  }

  public String jdbcUrl() {
    return "jdbc:postgresql://127.0.0.1:" + postgresPort + "/" + EmbeddedPostgresServer.DATABASE;
  }

  public String jdbcUser() {
    return EmbeddedPostgresServer.USER;
  }

  public Path baseDir() {
    return baseDir;
  }

  public Path postgresLog() {
    return baseDir.resolve("pg.postgres.log");
  }

  public synchronized boolean postgresRunning() {
    return postgres != null && postgres.isRunning();
  }

  // ------------------------------------------------------------------------------ faults

  /** SIGKILL of node {@code i}'s JVM alone: its sandboxes keep running (a control-plane crash). */
  public void kill(int i) {
    node(i).killJvm();
  }

  /**
   * Host loss: SIGKILL of node {@code i}'s JVM and then of every sandbox process of its data dir,
   * repeated until none is left. Returns the sandbox processes killed.
   */
  public List<Long> killHost(int i) {
    LocalNode n = node(i);
    List<Long> vms = new ArrayList<>(n.descendantPids());
    n.killJvm();
    List<Long> killed = Processes.killAllMentioning(n.dataDir().toString() + "/");
    for (long v : vms) {
      if (!killed.contains(v)) {
        ProcessHandle.of(v).ifPresent(ProcessHandle::destroyForcibly);
        killed.add(v);
      }
    }
    return killed;
  }

  /** SIGTERM and wait for the node JVM to exit (SIGKILL after 20 s). Sandboxes keep running. */
  public void stop(int i) {
    node(i).stopJvm(STOP_TIMEOUT);
  }

  /**
   * Starts node {@code i} again on its ports and data dir, seeded with the other running nodes,
   * and waits for its ready line. The node must not be running.
   */
  public void restart(int i) throws IOException {
    LocalNode n = node(i);
    if (n.isAlive()) throw new IllegalStateException("node " + i + " is running; stop or kill it first");
    List<String> seeds = new ArrayList<>();
    for (LocalNode o : nodes) {
      if (o != n && o.isAlive()) seeds.add(o.arteryAddress());
    }
    if (seeds.isEmpty()) seeds.add(nodes.get(0).arteryAddress());
    n.spawn(seeds);
    awaitReady(List.of(n));
  }

  /** SIGSTOP of node {@code i}'s JVM (its sandboxes keep running). */
  public void pause(int i) {
    node(i).paused(true);
    Processes.signal(node(i).pid(), "STOP");
  }

  /** SIGCONT of node {@code i}'s JVM. */
  public void resume(int i) {
    Processes.signal(node(i).pid(), "CONT");
    node(i).paused(false);
  }

  /** Stops PostgreSQL (fast shutdown: clients are disconnected) and waits for it to exit. */
  public synchronized void stopPostgres() {
    if (postgres != null) postgres.close();
  }

  /** Starts PostgreSQL again on the same port and data directory. */
  public synchronized void startPostgres() throws IOException {
    if (settings.embeddedJournal) throw new IllegalStateException("this cluster runs on its embedded journal: no PostgreSQL");
    if (postgres != null && postgres.isRunning()) return;
    postgres = startPostgresOn(postgresPort);
  }

  /** On loopback, and on the bridge for the nodes in network namespaces. */
  private EmbeddedPostgresServer startPostgresOn(int port) throws IOException {
    if (network == null) return EmbeddedPostgresServer.start(baseDir.resolve("pg"), port);
    return EmbeddedPostgresServer.start(baseDir.resolve("pg"), port, Duration.ofSeconds(60), network.bridgeAddress(), network.cidr());
  }

  // ------------------------------------------------------------------------------ network faults

  /** The nodes' network namespaces, or empty when the cluster runs without ({@link Builder#networkNamespaces}). */
  public java.util.Optional<NetworkNamespaces> network() {
    return java.util.Optional.ofNullable(network);
  }

  private NetworkNamespaces net() {
    if (network == null) throw new IllegalStateException("this cluster runs without network namespaces: no links to cut");
    return network;
  }

  /** Drops every packet between nodes {@code a} and {@code b} (both ways) until healed. */
  public void cut(int a, int b) {
    net().cut(a, b);
  }

  /** Drops the packets node {@code from} sends to node {@code to}; the other way still flows. */
  public void cutOneWay(int from, int to) {
    net().cutOneWay(from, to);
  }

  /** Node {@code i} can no longer reach PostgreSQL; everything else of its network works. */
  public void cutFromPostgres(int i) {
    net().cutFromPostgres(i, postgresPort);
  }

  /** Cuts and heals the link between {@code a} and {@code b} on a schedule until the handle is closed (healed then). */
  public AutoCloseable flap(int a, int b, Duration cutFor, Duration healedFor) {
    return net().flap(a, b, cutFor, healedFor);
  }

  /** Heals the link between {@code a} and {@code b}, both ways. */
  public void heal(int a, int b) {
    net().heal(a, b);
  }

  /** Removes every network fault. */
  public void heal() {
    net().healAll();
  }

  /** A live guest agent (one VM of a sandbox): its JVM's pid, sandbox, incarnation and the node whose data dir runs it. */
  public record LiveVm(long pid, String sandboxId, long incarnation, int node) {}

  /**
   * The live guest agents of this cluster by sandbox id (agent JVM pids): more than one for a
   * sandbox means two VMs of it are alive at once.
   */
  public Map<String, List<Long>> liveAgents() {
    return agentsOf(Processes.list(), baseDir.toString() + "/");
  }

  /** {@link #vmsOf} by sandbox id, pids in order. */
  static Map<String, List<Long>> agentsOf(List<Processes.Proc> procs, String base) {
    Map<String, List<Long>> out = new TreeMap<>();
    for (LiveVm v : vmsOf(procs, base)) out.computeIfAbsent(v.sandboxId(), k -> new ArrayList<>()).add(v.pid());
    out.values().forEach(pids -> pids.sort(null));
    return out;
  }

  /**
   * Every live guest agent of this cluster. An agent's own command line names only paths inside
   * its container ({@code /.fl/...}), so it is this cluster's when one of its ancestors names the
   * base directory: the {@code runc run --bundle <base>/nI/vms/...} that is its container's parent
   * (and outlives a killed node), which also says which node's data dir it belongs to.
   */
  public List<LiveVm> liveVms() {
    return vmsOf(Processes.list(), baseDir.toString() + "/");
  }

  /** The agent JVMs among {@code procs} of the cluster under {@code base} (see {@link #liveVms()}). */
  static List<LiveVm> vmsOf(List<Processes.Proc> procs, String base) {
    java.util.regex.Pattern nodeDir = java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(base) + "n(\\d+)/");
    Map<Long, Processes.Proc> all = new java.util.HashMap<>();
    for (Processes.Proc p : procs) all.put(p.pid(), p);
    Map<Long, String> agents = new java.util.HashMap<>();
    for (Processes.Proc p : all.values()) {
      if (p.state() == 'Z' || p.argv().isEmpty()) continue;
      if (!p.argv().get(0).endsWith("/java") && !p.argv().get(0).equals("java")) continue;
      int at = p.argv().indexOf("--sandbox-id");
      if (at >= 0 && at + 1 < p.argv().size()) agents.put(p.pid(), p.argv().get(at + 1));
    }
    List<LiveVm> out = new ArrayList<>();
    agents.forEach((pid, id) -> {
      Processes.Proc p = all.get(pid);
      // A process whose parent is the agent itself is the agent's own child between fork and exec
      // (posix_spawn of an exec'd command): it still shows the agent's command line, but it is no VM.
      if (id.equals(agents.get(p.ppid()))) return;
      int node = -1;
      Processes.Proc q = p;
      for (int depth = 0; depth < 8 && q != null && node < 0; depth++) {
        for (String a : q.argv()) {
          java.util.regex.Matcher m = nodeDir.matcher(a);
          if (m.find()) {
            node = Integer.parseInt(m.group(1));
            break;
          }
        }
        q = q.ppid() > 1 ? all.get(q.ppid()) : null;
      }
      if (node < 0) return; // another cluster's, or another user's
      int inc = p.argv().indexOf("--incarnation");
      long incarnation = -1;
      try {
        if (inc >= 0 && inc + 1 < p.argv().size()) incarnation = Long.parseLong(p.argv().get(inc + 1));
      } catch (NumberFormatException ignored) {
        // an agent of another version: counted, incarnation unknown
      }
      out.add(new LiveVm(pid, id, incarnation, node));
    });
    return out;
  }

  // ------------------------------------------------------------------------------ close

  /**
   * Stops every node (SIGCONT first, then SIGTERM in parallel, SIGKILL after a grace), kills any
   * sandbox process left under the base directory, stops PostgreSQL, and removes the base
   * directory unless told to keep it. Idempotent.
   */
  @Override
  public void close() {
    closeQuietly();
    try {
      Runtime.getRuntime().removeShutdownHook(shutdownHook);
    } catch (IllegalStateException alreadyShuttingDown) {
      // the hook is running or has run; closeQuietly is idempotent
    }
  }

  private synchronized void closeQuietly() {
    if (closed) return;
    closed = true;
    List<CompletableFuture<Void>> stops = new ArrayList<>();
    for (LocalNode n : nodes) {
      if (n.isAlive()) {
        Processes.signal(n.pid(), "CONT");
        stops.add(CompletableFuture.runAsync(() -> n.stopJvm(STOP_TIMEOUT)));
      }
    }
    stops.forEach(f -> {
      try {
        f.join();
      } catch (RuntimeException ignored) {
        // best effort: the kill below still runs
      }
    });
    for (LocalNode n : nodes) n.killJvm();
    Processes.killAllMentioning(baseDir.toString() + "/");
    for (LocalNode n : nodes) {
      // Containers outlive their node by design: a cluster thrown away takes them (and their
      // mounts, cgroups and id ranges) with it.
      dev.flotilla.vm.process.ProcessHypervisor.forgetAll(n.dataDir().resolve("vms"));
      Cgroups.removeLeftovers(n.dataDir());
    }
    if (postgres != null) postgres.close();
    if (network != null) network.close();
    if (settings.deleteOnClose) deleteRecursively(baseDir);
  }

  private static void deleteRecursively(Path dir) {
    if (!Files.exists(dir)) return;
    try (Stream<Path> all = Files.walk(dir)) {
      all.sorted(java.util.Comparator.reverseOrder()).forEach(p -> {
        try {
          Files.deleteIfExists(p);
        } catch (IOException ignored) {
          // a file that cannot go stays; the directory is in /tmp
        }
      });
    } catch (IOException | UncheckedIOException ignored) {
      // same
    }
  }
}
