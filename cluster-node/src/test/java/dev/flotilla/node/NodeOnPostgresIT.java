package dev.flotilla.node;

import dev.flotilla.persistence.EmbeddedPostgresServer;
import java.nio.file.Path;
import org.apache.pekko.actor.ActorSystem;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/** The same end-to-end scenarios with the journal on a real (embedded) PostgreSQL. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class NodeOnPostgresIT extends NodeScenarios {
  EmbeddedPostgresServer postgres;

  @BeforeAll
  void startNode() throws Exception {
    Path dir = TestNode.shortTempDir();
    postgres = EmbeddedPostgresServer.start(dir.resolve("pg"));
    clientSystem = ActorSystem.create("client");
    node = new TestNode(dir.resolve("node"), postgres.jdbcUrl()).start();
    client = node.client(clientSystem);
    token = node.defaultToken();
  }

  @AfterAll
  void stopNode() {
    try {
      deleteAll();
    } finally {
      if (node != null) {
        node.close();
        node.killVms();
      }
      if (clientSystem != null) clientSystem.terminate();
      if (postgres != null) postgres.close();
    }
  }

  @Test
  void sandboxLifecycle() {
    lifecycle();
  }

  @Test
  void watchFollowsChanges() {
    watch();
  }
}
