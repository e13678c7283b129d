package dev.flotilla.node.local;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

/**
 * One node JVM of a {@link LocalCluster}: its fixed ports, data dir and log file, and the
 * process currently running it (a new one after each restart).
 */
public final class LocalNode {
  static final String READY_PREFIX = "flotilla node ready:";

  private final int index;
  private final String host;
  private final int grpcPort;
  private final int arteryPort;
  private final Path dataDir;
  private final Path logFile;
  private final Path nodeJar;
  private final Path agentJar;
  private final List<String> javaOptions;
  private final Path configFile;
  private final String jdbcUrl;
  private final String jdbcUser;
  private final String jdbcPassword;
  private volatile Map<String, String> env = Map.of();
  private volatile List<String> enter = List.of();
  private volatile Process process;
  private volatile long logOffset;
  private volatile boolean paused;

  LocalNode(int index, String host, int grpcPort, int arteryPort, Path dataDir, Path logFile, Path nodeJar,
      Path agentJar, List<String> javaOptions, Path configFile, String jdbcUrl, String jdbcUser, String jdbcPassword) {
    this.index = index;
    this.host = host;
    this.grpcPort = grpcPort;
    this.arteryPort = arteryPort;
    this.dataDir = dataDir;
    this.logFile = logFile;
    this.nodeJar = nodeJar;
    this.agentJar = agentJar;
    this.javaOptions = javaOptions;
    this.configFile = configFile;
    this.jdbcUrl = jdbcUrl;
    this.jdbcUser = jdbcUser;
    this.jdbcPassword = jdbcPassword;
  }

  /** Extra environment of the node JVM (its certificates). */
  void env(Map<String, String> extra) {
    this.env = Map.copyOf(extra);
  }

  /** A command prefix that runs the node in its network namespace ({@link NetworkNamespaces#enter}). */
  void enter(List<String> prefix) {
    this.enter = List.copyOf(prefix);
  }

  /** 1-based. */
  public int index() {
    return index;
  }

  public String host() {
    return host;
  }

  public int grpcPort() {
    return grpcPort;
  }

  public int arteryPort() {
    return arteryPort;
  }

  /** host:port of the gRPC API. */
  public String grpcAddress() {
    return host + ":" + grpcPort;
  }

  /** host:port of the cluster (artery) endpoint, also the node name sandboxes report. */
  public String arteryAddress() {
    return host + ":" + arteryPort;
  }

  public Path dataDir() {
    return dataDir;
  }

  public Path logFile() {
    return logFile;
  }

  /** The node JVM's pid, 0 before the first start. */
  public long pid() {
    Process p = process;
    return p == null ? 0 : p.pid();
  }

  public boolean isAlive() {
    Process p = process;
    return p != null && p.isAlive();
  }

  /** SIGSTOPped by {@link LocalCluster#pause} and not yet resumed: alive, but answers nothing. */
  public boolean isPaused() {
    return paused && isAlive();
  }

  void paused(boolean p) {
    paused = p;
  }

  /** The last {@code lines} lines of the node's log (all its runs). */
  public String logTail(int lines) {
    try {
      List<String> all = Files.readAllLines(logFile, StandardCharsets.UTF_8);
      return String.join("\n", all.subList(Math.max(0, all.size() - lines), all.size()));
    } catch (IOException e) {
      return "(no log " + logFile + ": " + e.getMessage() + ")";
    }
  }

  List<String> command(List<String> seeds) {
    List<String> cmd = new ArrayList<>();
    if (Files.isExecutable(Path.of("/usr/bin/setpriv"))) {
      // parent-death signal: a launcher that dies (even by SIGKILL) takes its nodes with it
      cmd.addAll(List.of("/usr/bin/setpriv", "--pdeathsig", "KILL", "--"));
    }
    // nsenter execs the JVM in the same process: the pid, and the parent-death signal, stay
    cmd.addAll(enter);
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.addAll(javaOptions);
    cmd.add("-Dflotilla.agent.jar=" + agentJar);
    cmd.addAll(List.of("-jar", nodeJar.toString(), "node",
        "--grpc-host", host, "--grpc-port", Integer.toString(grpcPort),
        "--artery-host", host, "--artery-port", Integer.toString(arteryPort),
        "--data-dir", dataDir.toString(), "--config", configFile.toString()));
    for (String s : seeds) cmd.addAll(List.of("--seed", s));
    return cmd;
  }

  /**
   * Spawns the node JVM from a thread that lives exactly as long as it does: the parent-death
   * signal fires when the spawning thread ends, not only when the JVM does.
   */
  synchronized void spawn(List<String> seeds) throws IOException {
    if (isAlive()) throw new IllegalStateException("node " + index + " is already running (pid " + pid() + ")");
    paused = false;
    logOffset = Files.exists(logFile) ? Files.size(logFile) : 0;
    Files.writeString(logFile, "=== LocalCluster: starting node " + index + " (seeds " + seeds + ") at "
        + java.time.Instant.now() + "\n", StandardCharsets.UTF_8,
        java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
    ProcessBuilder pb = new ProcessBuilder(command(seeds))
        .redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
        .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
    pb.environment().put("FLOTILLA_JDBC_URL", jdbcUrl);
    pb.environment().put("FLOTILLA_JDBC_USER", jdbcUser);
    pb.environment().put("FLOTILLA_JDBC_PASSWORD", jdbcPassword);
    pb.environment().put("FLOTILLA_AGENT_JAR", agentJar.toString());
    pb.environment().putAll(env);
    CompletableFuture<Process> started = new CompletableFuture<>();
    Thread keeper = new Thread(() -> {
      Process p;
      try {
        p = pb.start();
      } catch (IOException | RuntimeException e) {
        started.completeExceptionally(e);
        return;
      }
      started.complete(p);
      while (true) {
        try {
          p.waitFor();
          return;
        } catch (InterruptedException ignored) {
          // keep the parent-death link until the node exits
        }
      }
    }, "local-node-" + index);
    keeper.setDaemon(true);
    keeper.start();
    try {
      process = started.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while starting node " + index, e);
    } catch (ExecutionException e) {
      throw new IOException("cannot start node " + index + ": " + e.getCause().getMessage(), e.getCause());
    }
  }

  /** Waits for this run's ready line in the log; fails with the log's tail if the JVM exits first. */
  void awaitReady(Duration timeout) throws IOException {
    long until = System.nanoTime() + timeout.toNanos();
    Process p = process;
    while (true) {
      if (readyLineSeen()) return;
      if (!p.isAlive()) {
        throw new IOException("node " + index + " exited with " + p.exitValue() + " before it was ready; log "
            + logFile + ":\n" + logTail(40));
      }
      if (System.nanoTime() > until) {
        throw new IOException("node " + index + " was not ready within " + timeout + "; log " + logFile + ":\n"
            + logTail(40));
      }
      try {
        p.waitFor(100, TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while waiting for node " + index, e);
      }
    }
  }

  private boolean readyLineSeen() throws IOException {
    try (RandomAccessFile f = new RandomAccessFile(logFile.toFile(), "r")) {
      long len = f.length();
      if (len <= logOffset) return false;
      byte[] buf = new byte[(int) Math.min(len - logOffset, 8 * 1024 * 1024)];
      f.seek(logOffset);
      f.readFully(buf);
      return new String(buf, StandardCharsets.UTF_8).contains(READY_PREFIX);
    }
  }

  /** The node JVM's descendants now (its sandboxes, while it is their parent). */
  List<Long> descendantPids() {
    Process p = process;
    if (p == null) return List.of();
    return p.descendants().map(ProcessHandle::pid).toList();
  }

  /** SIGKILL, then wait for the exit. */
  void killJvm() {
    Process p = process;
    if (p == null || !p.isAlive()) return;
    p.destroyForcibly();
    try {
      p.waitFor(30, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** SIGTERM (coordinated shutdown), wait up to {@code grace}, then SIGKILL. */
  void stopJvm(Duration grace) {
    Process p = process;
    if (p == null || !p.isAlive()) return;
    p.destroy();
    try {
      if (!p.waitFor(grace.toMillis(), TimeUnit.MILLISECONDS)) killJvm();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      killJvm();
    }
  }

  @Override
  public String toString() {
    return "node " + index + " grpc=" + grpcAddress() + " artery=" + arteryAddress() + " pid=" + pid();
  }
}
