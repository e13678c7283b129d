package dev.flotilla.node.local;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The node JVM's class-data archive (AppCDS, JDK 17's dynamic archive): the classes a node loads
 * until it is ready, parsed and verified once, mapped by every later start. Measured on this
 * machine kind (2 cores, idle): a standalone node ready in 2.7–2.8 s with it against 4.4–4.8 s
 * without; a node restarted on a loaded host rejoins its cluster that much sooner.
 *
 * <p>Made next to the node jar ({@code flotilla.jsa}) by one training start: a node on a throwaway
 * data directory, run with {@code -XX:ArchiveClassesAtExit} until it is ready, then stopped with
 * SIGTERM (the JVM writes the archive as it exits). Made again whenever the jar or one of its
 * {@code lib/} jars is newer. The JVM checks the class path against the archive itself and, with
 * {@code -Xshare:auto}, runs without it when they differ: the archive only ever costs a slower
 * start. Used by {@link LocalCluster} (tests, {@code flotilla dev-cluster}) and by {@code
 * ./flotilla node} ({@link #main}).
 */
public final class NodeClassArchive {

  /** Loaded only when there is something to say: {@link #main}'s check of a fresh archive stays a ~0.3 s JVM. */
  private static final class Log {
    static final Logger LOG = LoggerFactory.getLogger(NodeClassArchive.class);
  }

  /** How long the training node may take to become ready (a cold, loaded machine). */
  static final Duration TRAINING_TIMEOUT = Duration.ofMinutes(3);
  static final String READY_LINE = "flotilla node ready";

  private NodeClassArchive() {}

  /** Where the archive of {@code nodeJar} lives. */
  public static Path archiveOf(Path nodeJar) {
    return nodeJar.toAbsolutePath().resolveSibling("flotilla.jsa");
  }

  /** The JVM options that use {@code archive}; the JVM falls back silently to no archive when it does not fit. */
  public static List<String> jvmOptions(Path archive) {
    return List.of("-XX:SharedArchiveFile=" + archive, "-Xshare:auto", "-Xlog:cds=off", "-Xlog:cds+dynamic=off");
  }

  /**
   * The archive of {@code nodeJar}, made first when it is missing or older than the jar or its
   * libraries; empty (and a warning logged) when it cannot be made: nodes then start without it.
   */
  public static synchronized Optional<Path> ensure(Path nodeJar, Path agentJar) {
    Path archive = archiveOf(nodeJar);
    try {
      if (fresh(archive, nodeJar)) return Optional.of(archive);
      Path lock = archive.resolveSibling(archive.getFileName() + ".lock");
      try (FileChannel ch = FileChannel.open(lock, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
           FileLock held = ch.lock()) {
        // another process may have made it while this one waited
        if (fresh(archive, nodeJar)) return Optional.of(archive);
        long t0 = System.nanoTime();
        train(nodeJar, agentJar, archive);
        Log.LOG.info("node class-data archive {} made in {} ms", archive, (System.nanoTime() - t0) / 1_000_000);
        return Optional.of(archive);
      }
    } catch (IOException e) {
      Log.LOG.warn("no class-data archive for the node ({}): nodes start without it, ~40% slower", e.getMessage());
      return Optional.empty();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return Optional.empty();
    }
  }

  /** Made after the jar and after each of its libraries. */
  static boolean fresh(Path archive, Path nodeJar) throws IOException {
    if (!Files.isRegularFile(archive) || Files.size(archive) == 0) return false;
    FileTime made = Files.getLastModifiedTime(archive);
    if (Files.getLastModifiedTime(nodeJar).compareTo(made) >= 0) return false;
    Path lib = nodeJar.toAbsolutePath().resolveSibling("lib");
    if (Files.isDirectory(lib)) {
      try (Stream<Path> s = Files.list(lib)) {
        for (Path p : s.toList()) {
          if (Files.getLastModifiedTime(p).compareTo(made) >= 0) return false;
        }
      }
    }
    return true;
  }

  private static void train(Path nodeJar, Path agentJar, Path archive) throws IOException, InterruptedException {
    Path dir = Files.createTempDirectory("flotilla-cds");
    Path tmp = archive.resolveSibling(archive.getFileName() + ".tmp");
    Files.deleteIfExists(tmp);
    Process p = null;
    try {
      List<Integer> ports = Ports.free(2);
      Path log = dir.resolve("node.log");
      List<String> cmd = new ArrayList<>();
      // parent-death signal, as for LocalNode: a maker that dies (even by SIGKILL) takes its training node with it
      if (Files.isExecutable(Path.of("/usr/bin/setpriv"))) cmd.addAll(List.of("/usr/bin/setpriv", "--pdeathsig", "KILL", "--"));
      cmd.addAll(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
          "-XX:ArchiveClassesAtExit=" + tmp, "-Dflotilla.agent.jar=" + agentJar, "-jar", nodeJar.toString(), "node",
          "--grpc-host", "127.0.0.1", "--grpc-port", Integer.toString(ports.get(0)),
          "--artery-host", "127.0.0.1", "--artery-port", Integer.toString(ports.get(1)),
          "--data-dir", dir.resolve("data").toString()));
      p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(log.toFile())
          .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
      long until = System.nanoTime() + TRAINING_TIMEOUT.toNanos();
      while (!ready(log)) {
        if (!p.isAlive()) throw new IOException("the training node exited with " + p.exitValue() + ": " + tail(log));
        if (System.nanoTime() > until) throw new IOException("the training node was not ready within " + TRAINING_TIMEOUT);
        Thread.sleep(100); // polling a child's log for its ready line
      }
      p.destroy(); // SIGTERM: the JVM writes the archive as it exits
      if (!p.waitFor(60, TimeUnit.SECONDS)) throw new IOException("the training node did not stop within 60 s of SIGTERM");
      if (!Files.isRegularFile(tmp) || Files.size(tmp) == 0) throw new IOException("the training node wrote no archive: " + tail(log));
      Files.move(tmp, archive, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    } finally {
      if (p != null && p.isAlive()) {
        p.destroyForcibly();
        p.waitFor(10, TimeUnit.SECONDS);
      }
      Files.deleteIfExists(tmp);
      deleteTree(dir);
    }
  }

  private static boolean ready(Path log) throws IOException {
    return Files.exists(log) && Files.readString(log, StandardCharsets.UTF_8).contains(READY_LINE);
  }

  private static String tail(Path log) {
    try {
      String s = Files.readString(log, StandardCharsets.UTF_8).strip();
      return s.length() > 2000 ? "…" + s.substring(s.length() - 2000) : s;
    } catch (IOException e) {
      return "(no log)";
    }
  }

  private static void deleteTree(Path dir) {
    try {
      dev.flotilla.vm.NodeOnlyFiles.deleteTree(dir); // never follows a link the node left there
    } catch (IOException e) {
      Log.LOG.warn("cannot delete the training node's directory {}: {}", dir, e.getMessage());
    }
  }

  /**
   * {@code java -cp flotilla.jar dev.flotilla.node.local.NodeClassArchive NODE_JAR AGENT_JAR}:
   * makes the archive when it is stale and prints the node JVM's options that use it, one a line
   * (nothing when it cannot be made; exit 0 either way). {@code ./flotilla node} calls it before it
   * starts the node, so that the check and the options are this class's alone.
   */
  public static void main(String[] args) {
    if (args.length != 2) {
      System.err.println("usage: NodeClassArchive NODE_JAR AGENT_JAR");
      System.exit(2);
    }
    Path nodeJar = Path.of(args[0]);
    try {
      if (!fresh(archiveOf(nodeJar), nodeJar)) {
        System.err.println("flotilla: making the node's class-data archive (once per build, ~15 s)");
      }
    } catch (IOException e) {
      // ensure says why
    }
    ensure(nodeJar, Path.of(args[1])).ifPresent(a -> jvmOptions(a).forEach(System.out::println));
  }
}
