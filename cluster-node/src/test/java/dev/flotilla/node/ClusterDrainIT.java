package dev.flotilla.node;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import dev.flotilla.api.v1.ClusterServiceClient;
import dev.flotilla.api.v1.DrainNodeRequest;
import dev.flotilla.api.v1.ListNodesRequest;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.DeleteSandboxRequest;
import dev.flotilla.api.v1.PauseSandboxRequest;
import dev.flotilla.api.v1.ResumeSandboxRequest;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxEvent;
import dev.flotilla.api.v1.SandboxServiceClient;
import dev.flotilla.api.v1.WatchSandboxRequest;
import org.apache.pekko.stream.javadsl.Sink;
import dev.flotilla.persistence.EmbeddedPostgresServer;
import dev.flotilla.vm.VmDirectory;
import dev.flotilla.vm.VmHandle;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import org.apache.pekko.grpc.GrpcClientSettings;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.TestInstance;

/**
 * Two nodes sharing one PostgreSQL journal, in this JVM: new sandboxes spread over both; either
 * node serves any sandbox; draining a node moves its sandboxes to the other as a new
 * incarnation, after their old VMs were stopped.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ClusterDrainIT extends NodeScenarios {
  static final String TOKEN = "cluster-test-token-0123456789";
  static final String ADMIN_TOKEN = "cluster-admin-token-0123456789";
  EmbeddedPostgresServer postgres;
  TestNode second;

  static int freePort() throws Exception {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  /** Holds both nodes' data dirs and PostgreSQL's. */
  Path dir;

  @BeforeAll
  void startCluster() throws Exception {
    dir = TestNode.shortTempDir();
    postgres = EmbeddedPostgresServer.start(dir.resolve("pg"));
    int seedPort = freePort();
    String seed = "pekko://flotilla@127.0.0.1:" + seedPort;
    Config common = ConfigFactory.parseString(
        "pekko.cluster.seed-nodes = [\"" + seed + "\"]\n"
            + "pekko.cluster.jmx.multi-mbeans-in-same-jvm = on\n"
            + "flotilla.auth.default-token-file = off\n"
            + "flotilla.auth.admin-token-file = off\n"
            + "flotilla.auth.tokens = [ { tenant = \"default\", token = \"" + TOKEN + "\" },"
            + " { tenant = \"admin\", token = \"" + ADMIN_TOKEN + "\" } ]");
    clientSystem = clientSystem();
    node = new TestNode(dir.resolve("n1"), postgres.jdbcUrl(),
        ConfigFactory.parseString("pekko.remote.artery.canonical.port = " + seedPort).withFallback(common)).start();
    second = new TestNode(dir.resolve("n2"), postgres.jdbcUrl(), common).start();
    client = node.client(clientSystem);
    token = TOKEN;
    Awaitility.await().atMost(READY).until(() -> upNodes().size() == 2);
  }

  @AfterAll
  void stopCluster() {
    try {
      tearDown(second, node);
    } finally {
      if (postgres != null) postgres.close();
      if (dir != null) TestNode.deleteUnmounted(dir); // both nodes' data dirs and PostgreSQL's
    }
  }

  ClusterServiceClient admin() {
    return ClusterServiceClient.create(
        GrpcClientSettings.connectToServiceAt("127.0.0.1", node.node.grpcPort(), clientSystem).withTls(false), clientSystem);
  }

  List<String> upNodes() {
    return await(admin().listNodes().addHeader("authorization", "Bearer " + ADMIN_TOKEN).invoke(ListNodesRequest.getDefaultInstance()))
        .getNodesList().stream().filter(n -> n.getStatus().equals("Up")).map(n -> n.getAddress()).toList();
  }

  @Test
  @Order(1)
  void aWatchOnOneNodeSeesChangesMadeThroughTheOther() throws Exception {
    SandboxServiceClient other = second.client(clientSystem);
    String id = create(spec(), "").getId();
    awaitPhase(id, Phase.RUNNING);
    // A watch that ends at once (the race that once crashed the cluster receptionist) ...
    await(other.watchSandbox().addHeader("authorization", bearer())
        .invoke(WatchSandboxRequest.newBuilder().setId(id).build()).take(1).runWith(Sink.seq(), clientSystem));
    // ... then a real one on the second node, while the changes go through the first.
    var seen = new java.util.concurrent.ConcurrentLinkedQueue<SandboxEvent>();
    var done = other.watchSandbox().addHeader("authorization", bearer())
        .invoke(WatchSandboxRequest.newBuilder().setId(id).build()).runForeach(seen::add, clientSystem);
    Awaitility.await().atMost(READY).until(() -> !seen.isEmpty());
    Awaitility.await().atMost(READY).pollInterval(Duration.ofMillis(500)).until(() -> {
      // Topic membership spreads through the receptionist: repeat the change until it is seen.
      await(client.pauseSandbox().addHeader("authorization", bearer()).invoke(PauseSandboxRequest.newBuilder().setId(id).build()));
      await(client.resumeSandbox().addHeader("authorization", bearer()).invoke(ResumeSandboxRequest.newBuilder().setId(id).build()));
      return seen.stream().anyMatch(e -> e.getEvent().equals("paused"));
    });
    await(client.deleteSandbox().addHeader("authorization", bearer()).invoke(DeleteSandboxRequest.newBuilder().setId(id).build()));
    await(done);
  }

  @Test
  @Order(2)
  void sandboxesSpreadAnyNodeServesThemAndDrainMovesThem() {
    String second = this.second.node.clusterAddress();
    List<String> ids = new ArrayList<>();
    for (int i = 0; i < 4; i++) ids.add(create(spec(), "").getId());
    Map<String, Sandbox> before = ids.stream().collect(Collectors.toMap(id -> id, id -> awaitPhase(id, Phase.RUNNING)));
    List<String> onSecond = ids.stream().filter(id -> before.get(id).getNode().equals(second)).toList();
    assertFalse(onSecond.isEmpty(), "least-loaded placement puts some of 4 new sandboxes on the second node: " + before.values());
    assertTrue(onSecond.size() < ids.size(), "and some on the first: " + before.values());

    // The first node's API runs commands in sandboxes that live on the second.
    for (String id : onSecond) assertEquals(id + "\n", exec(id, "echo", id).stdout());

    List<VmHandle> oldVms = new VmDirectory(this.second.dataDir.resolve("vms")).handles();
    assertFalse(oldVms.isEmpty());

    // The default tenant is no administrator: only the admin identity drains (through the CLI, as an operator does).
    assertEquals(io.grpc.Status.Code.PERMISSION_DENIED, codeOf(() -> await(admin().drainNode().addHeader("authorization", bearer())
        .invoke(DrainNodeRequest.newBuilder().setAddress(second).build()))));
    Cli nodes = cliAs(ADMIN_TOKEN, "", "nodes");
    assertEquals(0, nodes.code(), nodes.err());
    for (String n : List.of(node.node.clusterAddress(), second)) {
      assertTrue(nodes.out().lines().anyMatch(l -> l.startsWith(n + " ") && l.contains("Up")), nodes.out());
    }
    Cli drained = cliAs(ADMIN_TOKEN, "", "drain", second);
    assertEquals(0, drained.code(), drained.err());
    assertTrue(drained.out().startsWith("draining " + second + " ("), drained.out());

    Awaitility.await().atMost(READY).pollInterval(Duration.ofMillis(200)).untilAsserted(() -> {
      for (String id : onSecond) {
        Sandbox s = get(id);
        assertEquals(Phase.RUNNING, s.getPhase(), s.toString());
        assertEquals(node.node.clusterAddress(), s.getNode(), s.toString());
        assertEquals(before.get(id).getIncarnation() + 1, s.getIncarnation(), s.toString());
      }
    });
    for (String id : onSecond) assertEquals("moved\n", exec(id, "echo", "moved").stdout());
    // Sandboxes on the first node were not touched.
    for (String id : ids) {
      if (!onSecond.contains(id)) assertEquals(before.get(id).getIncarnation(), get(id).getIncarnation());
    }
    // The drained node stopped its VMs and left.
    for (VmHandle h : oldVms) {
      assertFalse(ProcessHandle.of(h.pid()).map(ProcessHandle::isAlive).orElse(false), "VM of " + h.sandboxId() + " still runs");
    }
    Awaitility.await().atMost(READY).until(() -> this.second.node.system().whenTerminated().isCompleted());
  }
}
