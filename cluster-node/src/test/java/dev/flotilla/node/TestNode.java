package dev.flotilla.node;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.flotilla.api.v1.SandboxServiceClient;
import dev.flotilla.node.auth.TokenAuth;
import dev.flotilla.vm.VmDirectory;
import dev.flotilla.vm.VmHandle;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.grpc.GrpcClientSettings;

/**
 * A real node in the test JVM: H2 (or a given PostgreSQL) journal, the real process driver,
 * gRPC on a free port. {@link #close()} stops the node; {@link #killVms()} makes sure no sandbox
 * process outlives the test.
 */
final class TestNode implements AutoCloseable {
  static final String OTHER_TENANT = "other";
  static final String OTHER_TOKEN = "other-tenant-token-0123456789";
  static final String SMALL_TENANT = "small";
  static final String SMALL_TOKEN = "small-tenant-token-0123456789";

  final Path dataDir;
  final String jdbcUrl;
  final Config extra;
  FlotillaNode node;

  TestNode(Path dataDir, String jdbcUrl) {
    this(dataDir, jdbcUrl, ConfigFactory.empty());
  }

  /** @param extra config layered over the test defaults (seed nodes, ports, tokens) */
  TestNode(Path dataDir, String jdbcUrl, Config extra) {
    this.dataDir = dataDir;
    this.jdbcUrl = jdbcUrl;
    this.extra = extra;
  }

  /**
   * A data dir with a short path (Unix socket paths must stay under 108 bytes), searchable by
   * others (0711) as the sandbox's unprivileged root must reach its state directory in it.
   */
  static Path shortTempDir() throws IOException {
    Path dir = Files.createTempDirectory(Path.of("/tmp"), "fl");
    Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx--x--x"));
    return dir;
  }

  TestNode start() throws IOException {
    Map<String, Object> o = new HashMap<>();
    o.put("flotilla.node.data-dir", dataDir.toString());
    o.put("flotilla.node.grpc.port", 0);
    o.put("pekko.remote.artery.canonical.port", 0);
    o.put("flotilla.persistence.jdbc-url", jdbcUrl == null ? "" : jdbcUrl);
    o.put("flotilla.sandbox.restart.min-backoff", "100ms");
    Config tokens = ConfigFactory.parseString(
        "flotilla.auth.tokens = [ { tenant = \"" + OTHER_TENANT + "\", token = \"" + OTHER_TOKEN + "\" },"
            + " { tenant = \"" + SMALL_TENANT + "\", token = \"" + SMALL_TOKEN + "\" } ]\n"
            + "flotilla.tenants.quotas.\"" + SMALL_TENANT + "\" { sandboxes = 1, vcpus = 2, memory-mib = 512 }\n"
            + "flotilla.tenants.limits.\"" + SMALL_TENANT + "\" { concurrent-watches = 1 }");
    Config c = extra.withFallback(ConfigFactory.parseMap(o)).withFallback(tokens).withFallback(ConfigFactory.load()).resolve();
    node = FlotillaNode.start(c);
    return this;
  }

  String defaultToken() throws IOException {
    return TokenAuth.defaultToken(dataDir);
  }

  /** The administration identity's token (the node writes it on first start). */
  String adminToken() throws IOException {
    return TokenAuth.adminToken(dataDir);
  }

  SandboxServiceClient client(ActorSystem clientSystem) {
    return SandboxServiceClient.create(
        GrpcClientSettings.connectToServiceAt("127.0.0.1", node.grpcPort(), clientSystem).withTls(false), clientSystem);
  }

  @Override
  public void close() {
    if (node != null) node.close();
    node = null;
  }

  /**
   * Removes the data dir, once the node is closed and its VMs killed ({@link #killVms}): each test
   * node's sandboxes leave up to a GiB there (writable layers, VM state), and a CI machine runs dozens.
   * Never while anything is mounted under it (that would be deleted through the mount); it says so then.
   */
  void deleteDataDir() {
    deleteUnmounted(dataDir);
  }

  /**
   * Removes {@code dir} (a test's temp dir: a node's data dir, or the one holding its embedded
   * PostgreSQL's, once that is closed), unless something is mounted under it; says why it did not.
   */
  static void deleteUnmounted(Path dir) {
    try {
      if (!Files.isDirectory(dir)) return;
      String prefix = dir.toRealPath() + "/";
      boolean mounted = Files.readAllLines(Path.of("/proc/self/mountinfo")).stream()
          .map(l -> l.split(" ")[4].replace("\\040", " "))
          .anyMatch(m -> (m + "/").startsWith(prefix));
      if (mounted) {
        System.err.println("TestNode: not deleting " + dir + ": something is still mounted under it");
        return;
      }
      dev.flotilla.vm.NodeOnlyFiles.deleteTree(dir);
    } catch (IOException | RuntimeException e) {
      System.err.println("TestNode: could not delete " + dir + ": " + e);
    }
  }

  /** Kills every sandbox process this node's data dir knows of, and removes its containers and mounts. */
  void killVms() {
    dev.flotilla.vm.process.ProcessHypervisor.forgetAll(dataDir.resolve("vms"));
    List<VmHandle> handles = new VmDirectory(dataDir.resolve("vms")).handles();
    for (VmHandle h : handles) {
      if (h.pid() > 0) {
        ProcessHandle.of(h.pid()).ifPresent(p -> {
          p.descendants().forEach(ProcessHandle::destroyForcibly);
          p.destroyForcibly();
        });
      }
    }
  }
}
