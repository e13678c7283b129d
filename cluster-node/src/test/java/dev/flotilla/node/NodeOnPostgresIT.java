package dev.flotilla.node;

import dev.flotilla.persistence.EmbeddedPostgresServer;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/** The same end-to-end scenarios with the journal on a real (embedded) PostgreSQL. */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class NodeOnPostgresIT extends NodeScenarios {
  EmbeddedPostgresServer postgres;
  Path dir;

  @BeforeAll
  void startNode() throws Exception {
    dir = TestNode.shortTempDir();
    postgres = EmbeddedPostgresServer.start(dir.resolve("pg"));
    boot(new TestNode(dir.resolve("node"), postgres.jdbcUrl()));
  }

  @AfterAll
  void stopNode() {
    try {
      tearDown(node);
    } finally {
      if (postgres != null) postgres.close();
      if (dir != null) TestNode.deleteUnmounted(dir); // the node's data dir and PostgreSQL's
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
