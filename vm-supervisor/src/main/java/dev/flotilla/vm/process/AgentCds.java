package dev.flotilla.vm.process;

import dev.flotilla.agent.protocol.client.AgentAddress;
import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentClients;
import dev.flotilla.agent.protocol.client.ExecRequest;
import dev.flotilla.agent.protocol.client.OutputSink;
import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A dynamic AppCDS archive of the guest agent's classes, so every sandbox's JVM maps them
 * instead of loading and verifying them again (about a fifth of the agent's start time here).
 * Made once per agent jar and JVM by a training run of the agent outside any sandbox that goes
 * through handshake, exec, wait, stats and shutdown; the JVM writes the archive as it exits.
 * Any failure only means no archive: the agents then start without one ({@code -Xshare:auto}).
 */
final class AgentCds {
  private static final Logger log = LoggerFactory.getLogger(AgentCds.class);
  private static final Duration T = Duration.ofSeconds(30);

  private AgentCds() {}

  static Optional<Path> archive(ProcessHypervisorConfig config) {
    try {
      Path jar = config.agentJar().toAbsolutePath();
      Path dir = config.stateRoot().resolve(".cds");
      String key = Integer.toHexString((jar + "|" + Files.size(jar) + "|" + Files.getLastModifiedTime(jar).toMillis() + "|"
          + System.getProperty("java.vm.version") + "|" + config.javaPath() + "|" + config.jvmFlags()).hashCode());
      Path archive = dir.resolve("agent-" + key + ".jsa");
      if (Files.isReadable(archive)) return Optional.of(archive);
      Files.createDirectories(dir);
      Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
      long t0 = System.nanoTime();
      Path tmp = train(config, dir, key);
      // The sandbox's root (another uid) maps it read-only.
      Files.setPosixFilePermissions(tmp, PosixFilePermissions.fromString("rw-r--r--"));
      Files.move(tmp, archive, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      removeOthers(dir, archive);
      log.info("guest agent class-data archive {} made in {} ms", archive, (System.nanoTime() - t0) / 1_000_000);
      return Optional.of(archive);
    } catch (Exception e) {
      log.warn("no class-data archive for the guest agent (agents start without one): {}", e.toString());
      return Optional.empty();
    }
  }

  private static Path train(ProcessHypervisorConfig config, Path dir, String key) throws Exception {
    Path tmp = dir.resolve("agent-" + key + ".jsa.tmp");
    Path sock = dir.resolve("train-" + ProcessHandle.current().pid() + ".sock");
    Files.deleteIfExists(tmp);
    Files.deleteIfExists(sock);
    List<String> cmd = new ArrayList<>();
    cmd.add(config.javaPath().toString());
    cmd.addAll(config.jvmFlags());
    cmd.add("-XX:ArchiveClassesAtExit=" + tmp);
    cmd.addAll(List.of("-jar", config.agentJar().toAbsolutePath().toString(), "--listen", "unix:" + sock,
        "--sandbox-id", "cds-training", "--incarnation", "1"));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD)
        .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null"))).start();
    try {
      try (AgentClient c = connect(p, new AgentAddress(sock))) {
        c.handshake("cds-training", 1, T).get(30, TimeUnit.SECONDS);
        OutputSink drop = new OutputSink() {
          @Override
          public void onData(Channel channel, byte[] data, Runnable release) {
            release.run();
          }

          @Override
          public void onEnd(Channel channel) {}
        };
        c.exec(ExecRequest.of("train", "sh", "-c", "echo out; echo err >&2"), drop, T).get(30, TimeUnit.SECONDS);
        c.waitProcess("train", T).get(30, TimeUnit.SECONDS);
        c.stats(T).get(30, TimeUnit.SECONDS);
        c.ping(T).get(30, TimeUnit.SECONDS);
        c.shutdown(Duration.ofSeconds(1), false, T).get(30, TimeUnit.SECONDS);
      }
      if (!p.waitFor(30, TimeUnit.SECONDS)) throw new IOException("the training agent did not exit after shutdown");
      if (!Files.isRegularFile(tmp)) throw new IOException("the training agent wrote no archive (exit " + p.exitValue() + ")");
      return tmp;
    } finally {
      p.destroyForcibly();
      Files.deleteIfExists(sock);
    }
  }

  /** Connects while the agent lives: a jar that cannot run fails at once, not after the deadline. */
  private static AgentClient connect(Process p, AgentAddress address) throws IOException {
    long until = System.nanoTime() + T.toNanos();
    while (true) {
      try {
        return AgentClients.connect(address, Duration.ofMillis(200));
      } catch (RuntimeException e) {
        if (!p.isAlive()) throw new IOException("the training agent exited with " + p.exitValue());
        if (System.nanoTime() > until) throw e;
      }
    }
  }

  private static void removeOthers(Path dir, Path keep) {
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir, "agent-*.jsa*")) {
      for (Path p : ds) {
        if (!p.equals(keep)) Files.deleteIfExists(p);
      }
    } catch (IOException e) {
      // stale archives only cost disk
    }
  }
}
