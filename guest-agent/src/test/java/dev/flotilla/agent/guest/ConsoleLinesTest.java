package dev.flotilla.agent.guest;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import org.awaitility.Awaitility;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class ConsoleLinesTest {

  private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
  private final ConsoleLines console = new ConsoleLines(new PrintStream(bytes, true, StandardCharsets.UTF_8));
  private final ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();

  @AfterEach
  void stop() {
    timer.shutdownNow();
  }

  private String written() {
    return bytes.toString(StandardCharsets.UTF_8);
  }

  @Test
  void linesAreWrittenAtOnceUnlessHeld() {
    console.say("one");
    assertEquals("one\n", written());
    assertFalse(console.holding());
  }

  @Test
  void heldLinesWaitForTheReleaseAndKeepTheirOrder() {
    console.hold(timer);
    assertTrue(console.holding());
    console.say("session 3 started");
    console.say("reborn as sb-1");
    assertEquals("", written(), "held until the clone has answered");
    console.release();
    assertEquals("session 3 started\nreborn as sb-1\n", written());
    assertFalse(console.holding());
    console.say("after");
    assertEquals("session 3 started\nreborn as sb-1\nafter\n", written());
    console.release(); // nothing held: nothing written twice
    assertEquals("session 3 started\nreborn as sb-1\nafter\n", written());
  }

  @Test
  void aHoldNoHandshakeEndsIsReleasedByItsTimer() {
    console.hold(timer);
    console.say("host gone");
    assertEquals("", written());
    Awaitility.await().atMost(Duration.ofMillis(ConsoleLines.MAX_HOLD_MILLIS + 5_000)).until(() -> !console.holding());
    assertEquals("host gone\n", written());
  }
}
