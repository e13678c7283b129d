package dev.flotilla.persistence;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import org.junit.jupiter.api.Test;

class EmbeddedPostgresServerTest {

  @Test
  void startsStopsWithoutLeakingAndKeepsDataAcrossRestarts() throws Exception {
    Path dir = TestPostgres.newDataDir();
    long firstPid;
    try {
      try (EmbeddedPostgresServer pg = EmbeddedPostgresServer.start(dir)) {
        firstPid = pg.pid();
        assertTrue(pg.jdbcUrl().startsWith("jdbc:postgresql://127.0.0.1:" + pg.port() + "/"));
        try (Connection c = DriverManager.getConnection(pg.jdbcUrl(), pg.user(), pg.password());
            Statement s = c.createStatement()) {
          s.execute("CREATE TABLE kept (v INT)");
          s.execute("INSERT INTO kept VALUES (42)");
        }
      }
      assertFalse(ProcessHandle.of(firstPid).map(ProcessHandle::isAlive).orElse(false), "postmaster stopped on close");

      try (EmbeddedPostgresServer again = EmbeddedPostgresServer.start(dir, 0, Duration.ofSeconds(60))) {
        assertTrue(again.pid() != firstPid);
        try (Connection c = DriverManager.getConnection(again.jdbcUrl(), again.user(), again.password());
            Statement s = c.createStatement();
            ResultSet rs = s.executeQuery("SELECT v FROM kept")) {
          assertTrue(rs.next());
          assertEquals(42, rs.getInt(1));
        }
        again.close();
        await().atMost(Duration.ofSeconds(5)).until(() -> !again.isRunning());
      }
      assertTrue(Files.exists(dir.resolve("PG_VERSION")));
    } finally {
      TestPostgres.deleteRecursively(dir);
      Files.deleteIfExists(dir.resolveSibling(dir.getFileName() + ".postgres.log"));
    }
  }

  @Test
  void asRootExplainsAnUnreachableDataDirectory(@org.junit.jupiter.api.io.TempDir Path privateDir) throws Exception {
    org.junit.jupiter.api.Assumptions.assumeTrue(
        (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid") == 0, "only root switches user");
    Files.setPosixFilePermissions(privateDir, java.nio.file.attribute.PosixFilePermissions.fromString("rwx------"));
    var ex = org.junit.jupiter.api.Assertions.assertThrows(
        java.io.IOException.class, () -> EmbeddedPostgresServer.start(privateDir.resolve("pg"), 0));
    assertTrue(ex.getMessage().contains("not searchable") && ex.getMessage().contains(privateDir.toString()), ex.getMessage());
  }

  @Test
  void runsAsProcessPrintsReadyLineAndStopsOnSigterm() throws Exception {
    Path dir = TestPostgres.newDataDir();
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    Process launcher =
        new ProcessBuilder(java, "-cp", System.getProperty("java.class.path"), EmbeddedPostgresServer.class.getName(), "--data-dir", dir.toString())
            .redirectErrorStream(true)
            .start();
    try {
      String ready = null;
      var out = new java.io.BufferedReader(new java.io.InputStreamReader(launcher.getInputStream()));
      for (String line; (line = out.readLine()) != null; ) {
        if (line.startsWith("postgres jdbc=")) {
          ready = line;
          break;
        }
      }
      assertTrue(ready != null && ready.matches("postgres jdbc=jdbc:postgresql://127\\.0\\.0\\.1:\\d+/postgres pid=\\d+"), String.valueOf(ready));
      long pgPid = Long.parseLong(ready.substring(ready.indexOf("pid=") + 4));
      String url = ready.substring("postgres jdbc=".length(), ready.indexOf(" pid="));
      try (Connection c = DriverManager.getConnection(url, "postgres", "")) {
        assertTrue(c.isValid(2));
      }
      Thread drain = new Thread(() -> {
        try {
          out.lines().forEach(l -> {});
        } catch (java.io.UncheckedIOException closedAtExit) {
          // the JDK closes a dead process's pipe under a reader: the end of its output all the same
        }
      });
      drain.setDaemon(true);
      drain.start();

      launcher.destroy(); // SIGTERM
      await().atMost(Duration.ofSeconds(30)).until(() -> !launcher.isAlive());
      assertEquals(143, launcher.exitValue(), "JVM terminated by SIGTERM after its shutdown hook ran");
      assertFalse(ProcessHandle.of(pgPid).map(ProcessHandle::isAlive).orElse(false), "postgres stopped with the launcher");
    } finally {
      launcher.destroyForcibly();
      TestPostgres.deleteRecursively(dir);
      Files.deleteIfExists(dir.resolveSibling(dir.getFileName() + ".postgres.log"));
    }
  }
}
