package dev.flotilla.vm.supervisor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.sandbox.protocol.ExecEvent;
import dev.flotilla.sandbox.protocol.ExecExited;
import dev.flotilla.sandbox.protocol.ExecOutput;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.pekko.actor.ActorSystem;
import org.apache.pekko.stream.Materializer;
import org.apache.pekko.stream.javadsl.Sink;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class MainLogTest {

  static ActorSystem system;
  static Materializer mat;
  @TempDir Path tmp;

  @BeforeAll
  static void start() {
    system = ActorSystem.create("main-log-test", com.typesafe.config.ConfigFactory.parseString("pekko.actor.provider = local"));
    mat = Materializer.matFromSystem(system);
  }

  @AfterAll
  static void stop() {
    system.terminate();
  }

  static byte[] b(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  static List<ExecEvent> read(MainLog log, int tail, boolean follow) throws Exception {
    return log.read(tail, follow, mat).runWith(Sink.seq(), mat).toCompletableFuture().get(10, TimeUnit.SECONDS);
  }

  static String text(List<ExecEvent> events, boolean stderr) {
    StringBuilder sb = new StringBuilder();
    for (ExecEvent e : events) {
      if (e instanceof ExecOutput o && o.stderr() == stderr) sb.append(o.data().utf8String());
    }
    return sb.toString();
  }

  @Test
  void keepsBothChannelsInOrderAndTailsByLines() throws Exception {
    MainLog log = new MainLogs(tmp.resolve("logs"), 64 * 1024).of("sb-0123456789abcdef");
    log.appendOutput(1, 0, false, b("a\nb\n"));
    log.appendOutput(1, 4, true, b("c\n"));
    log.appendOutput(1, 6, false, b("d\npartial"));
    assertEquals("a\nb\nd\npartial", text(read(log, -1, false), false));
    assertEquals("c\n", text(read(log, -1, false), true));
    assertEquals("partial", text(read(log, 1, false), false), "an unfinished last line counts as a line");
    assertEquals("d\npartial", text(read(log, 2, false), false));
    assertEquals("c\n", text(read(log, 3, false), true));
    assertEquals("b\nd\npartial", text(read(log, 4, false), false));
    assertTrue(read(log, 0, false).isEmpty());
    assertEquals(new MainLog.Progress(15, false, 0, 0, ""), log.progress(1));
    assertEquals(0, log.progress(2).offset(), "another incarnation starts from nothing");
    assertEquals("0600", mode(tmp.resolve("logs/sb-0123456789abcdef.log")));
    assertEquals("0700", mode(tmp.resolve("logs")));
  }

  @Test
  void staysBoundedAndKeepsTheNewestOutput() throws Exception {
    MainLog log = new MainLogs(tmp.resolve("logs"), 16 * 1024).of("sb-0123456789abcdef");
    long offset = 0;
    for (int i = 0; i < 2000; i++) {
      byte[] line = b("line " + i + "\n");
      log.appendOutput(7, offset, false, line);
      offset += line.length;
    }
    long onDisk = Files.size(tmp.resolve("logs/sb-0123456789abcdef.log")) + Files.size(tmp.resolve("logs/sb-0123456789abcdef.log.1"));
    assertTrue(onDisk <= 16 * 1024, "at most its cap on disk: " + onDisk);
    String kept = text(read(log, -1, false), false);
    assertTrue(kept.endsWith("line 1999\n"), "the newest output is kept");
    assertFalse(kept.contains("line 0\n"), "the oldest went");
    // At least half the cap on disk is kept, framing included (one record per write: the worst case, 10-byte writes).
    long records = kept.lines().count();
    assertTrue(records * (MainLog.HEADER + 10) >= 8 * 1024 - (MainLog.HEADER + 10), "records kept: " + records);
    assertEquals(offset, log.progress(7).offset());
  }

  @Test
  void aReopenedLogResumesWhereItsLastWholeRecordEnds() throws Exception {
    Path dir = tmp.resolve("logs");
    MainLog log = new MainLogs(dir, 64 * 1024).of("sb-0123456789abcdef");
    log.appendOutput(3, 100, false, b("kept\n"));
    // A crash in the middle of the next record: a header promising more than was written.
    Files.write(dir.resolve("sb-0123456789abcdef.log"), new byte[] {1, 0, 0, 0}, StandardOpenOption.APPEND);
    MainLog reopened = new MainLogs(dir, 64 * 1024).of("sb-0123456789abcdef");
    assertEquals(105, reopened.progress(3).offset());
    reopened.appendOutput(3, 105, false, b("next\n"));
    assertEquals("kept\nnext\n", text(read(reopened, -1, false), false));
  }

  @Test
  void aFollowGetsNewOutputAndEndsWithTheExit() throws Exception {
    MainLog log = new MainLogs(tmp.resolve("logs"), 64 * 1024).of("sb-0123456789abcdef");
    log.appendOutput(1, 0, false, b("old\n"));
    var followed = log.read(-1, true, mat).runWith(Sink.seq(), mat).toCompletableFuture();
    log.appendOutput(1, 4, true, b("new\n"));
    log.appendExit(1, 8, 5, 0, "main process exited with code 5");
    List<ExecEvent> events = followed.get(10, TimeUnit.SECONDS);
    assertEquals("old\n", text(events, false));
    assertEquals("new\n", text(events, true));
    assertEquals(new ExecExited(5, 0), events.get(events.size() - 1));
    assertEquals(new MainLog.Progress(8, true, 5, 0, "main process exited with code 5"), log.progress(1));
    // After the end, a follow ends at once with it.
    List<ExecEvent> again = read(log, 0, true);
    assertInstanceOf(ExecExited.class, again.get(again.size() - 1));
  }

  @Test
  void removingALogEndsItsFollowersAndItsFiles() throws Exception {
    MainLogs logs = new MainLogs(tmp.resolve("logs"), 64 * 1024);
    MainLog log = logs.of("sb-0123456789abcdef");
    log.appendOutput(1, 0, false, b("x\n"));
    var followed = log.read(-1, true, mat).runWith(Sink.seq(), mat).toCompletableFuture();
    assertEquals(java.util.Set.of("sb-0123456789abcdef"), logs.sandboxes());
    logs.remove("sb-0123456789abcdef");
    assertEquals("x\n", text(followed.get(10, TimeUnit.SECONDS), false));
    assertFalse(Files.exists(tmp.resolve("logs/sb-0123456789abcdef.log")));
    assertTrue(logs.sandboxes().isEmpty());
  }

  static String mode(Path p) throws Exception {
    String perms = PosixFilePermissions.toString(Files.getPosixFilePermissions(p));
    int m = 0;
    for (int i = 0; i < 9; i++) if (perms.charAt(i) != '-') m |= 1 << (8 - i);
    return String.format("%04o", m);
  }
}
