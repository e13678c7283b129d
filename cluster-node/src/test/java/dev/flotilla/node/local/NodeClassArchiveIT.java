package dev.flotilla.node.local;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The node's class-data archive: made from this build's node jar by a real training start, and
 * mapped by a JVM that refuses to start without it ({@code -Xshare:on}); and when it counts as
 * out of date.
 */
class NodeClassArchiveIT {

  @TempDir Path dir;

  @Test
  void theArchiveOfThisBuildIsMadeAndAJvmThatRequiresItStarts() throws Exception {
    Path nodeJar = Jars.nodeJar();
    Path archive = NodeClassArchive.ensure(nodeJar, Jars.agentJar(nodeJar)).orElseThrow(() -> new AssertionError("no archive made"));
    assertEquals(NodeClassArchive.archiveOf(nodeJar), archive);
    assertTrue(NodeClassArchive.fresh(archive, nodeJar), "fresh once made");
    List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-XX:SharedArchiveFile=" + archive, "-Xshare:on", "-Xlog:cds=info", "-jar", nodeJar.toString(), "--version"));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the JVM ended");
    assertEquals(0, p.exitValue(), "a JVM that must map the archive (-Xshare:on) starts with it: " + out);
    assertTrue(out.contains("flotilla"), out);
  }

  @Test
  void anArchiveOlderThanTheJarOrOneOfItsLibrariesIsOutOfDate() throws IOException {
    Path jar = Files.writeString(dir.resolve("flotilla.jar"), "jar");
    Path lib = Files.createDirectories(dir.resolve("lib"));
    Path dep = Files.writeString(lib.resolve("dep.jar"), "dep");
    Path archive = dir.resolve("flotilla.jsa");
    Instant t = Instant.parse("2026-01-01T00:00:00Z");
    assertFalse(NodeClassArchive.fresh(archive, jar), "missing");
    Files.writeString(archive, "");
    assertFalse(NodeClassArchive.fresh(archive, jar), "empty");
    Files.writeString(archive, "archive");
    Files.setLastModifiedTime(jar, FileTime.from(t));
    Files.setLastModifiedTime(dep, FileTime.from(t));
    Files.setLastModifiedTime(archive, FileTime.from(t.plusSeconds(10)));
    assertTrue(NodeClassArchive.fresh(archive, jar), "made after both");
    Files.setLastModifiedTime(dep, FileTime.from(t.plusSeconds(20)));
    assertFalse(NodeClassArchive.fresh(archive, jar), "a library rebuilt since");
    Files.setLastModifiedTime(dep, FileTime.from(t));
    Files.setLastModifiedTime(jar, FileTime.from(t.plusSeconds(20)));
    assertFalse(NodeClassArchive.fresh(archive, jar), "the jar rebuilt since");
  }
}
