package dev.flotilla.node.local;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.cli.Cli;
import dev.flotilla.cli.CliContext;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * What {@code flotilla dev-cluster} starts by default: two node JVMs with their own CA's
 * certificates form a cluster over mutual TLS, serve gRPC over TLS, and the CLI reaches them with
 * exactly the variables dev-cluster prints.
 */
class DevClusterTlsIT {

  record Run(int code, String out, String err) {
    long up() {
      return out.lines().filter(l -> l.contains(" Up ")).count();
    }
  }

  @Test
  void twoNodesFormAClusterOverMutualTlsAndTheCliUsesThePrintedVariables() throws Exception {
    try (LocalCluster cluster = LocalCluster.builder().nodes(2).tls(true).start()) {
      assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(cluster.tokenFile())));
      assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(cluster.baseDir().resolve("cluster.conf"))));
      Map<String, String> env = new HashMap<>(Map.of(
          "FLOTILLA_ENDPOINT", cluster.node(1).grpcAddress(),
          "FLOTILLA_TOKEN_FILE", cluster.tokenFile().toString(),
          "FLOTILLA_TLS", "1",
          "FLOTILLA_CA", cluster.caCert().toString()));
      // node 2 is Up once gossip has converged
      Run[] last = new Run[1];
      await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(500))
          .until(() -> (last[0] = run(env, "nodes", "--token-file", cluster.adminTokenFile().toString())).code() == 0
              && last[0].up() == 2);
      assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(cluster.adminTokenFile())));
      // The administration API is not for tenants: the default tenant's token is refused.
      Run asTenant = run(env, "nodes");
      assertEquals(1, asTenant.code(), asTenant.err());
      assertTrue(asTenant.err().contains("permission denied"), asTenant.err());
      assertTrue(last[0].out().contains(cluster.node(2).arteryAddress()), last[0].out());
      for (int i = 1; i <= 2; i++) {
        assertTrue(cluster.node(i).logTail(400).contains("cluster transport: mutual TLS"), cluster.node(i).logTail(60));
      }

      env.remove("FLOTILLA_TLS");
      env.remove("FLOTILLA_CA");
      Run plaintext = run(env, "nodes", "--token-file", cluster.adminTokenFile().toString());
      assertEquals(3, plaintext.code(), plaintext.err());
      assertTrue(plaintext.err().contains("does it serve TLS?"), plaintext.err());
    }
  }

  private static Run run(Map<String, String> env, String... args) {
    ByteArrayOutputStream o = new ByteArrayOutputStream();
    ByteArrayOutputStream e = new ByteArrayOutputStream();
    int code = new Cli(new CliContext(Map.copyOf(env), Path.of("."), new PrintStream(o, true, StandardCharsets.UTF_8),
        new PrintStream(e, true, StandardCharsets.UTF_8))).run(args);
    return new Run(code, o.toString(StandardCharsets.UTF_8), e.toString(StandardCharsets.UTF_8));
  }
}
