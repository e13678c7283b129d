package dev.flotilla.agent.protocol.frame;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.code_intelligence.jazzer.api.FuzzedDataProvider;
import com.code_intelligence.jazzer.junit.FuzzTest;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The frame decoder and the connection's read loop on arbitrary bytes from a peer. A peer can send
 * anything: the decoder either yields well-formed frames (that re-encode to exactly the bytes they
 * came from) or refuses with a {@link ProtocolException}; the connection always ends, with a clean
 * end, a ProtocolException or the peer's GOAWAY as its cause, never a crash of its reader.
 *
 * <p>Seeds and regression inputs: {@code src/test/resources/.../FrameFuzzTestInputs/frames/};
 * longer runs: {@code scripts/fuzz.sh}.
 */
class FrameFuzzTest {

  /** Small, so that the fuzzer reaches the limit checks with short inputs. */
  private static final int MAX_PAYLOAD = 256;

  /** Both targets in one, so that one fuzzing JVM covers them: the last byte picks. */
  @FuzzTest(maxDuration = "10s")
  void frames(FuzzedDataProvider data) throws Exception {
    boolean decodeOnly = data.consumeBoolean();
    byte[] wire = data.consumeRemainingAsBytes();
    if (decodeOnly) {
      decode(wire);
    } else {
      connection(wire);
    }
  }

  private static void decode(byte[] wire) {
    FrameCodec codec = new FrameCodec(MAX_PAYLOAD);
    ByteArrayInputStream in = new ByteArrayInputStream(wire);
    int consumed = 0;
    while (true) {
      Frame f;
      try {
        f = codec.read(in);
      } catch (ProtocolException e) {
        assertTrue(e.getMessage() != null && !e.getMessage().isEmpty(), "a refusal says why");
        return;
      } catch (IOException e) {
        fail("a byte array cannot fail to read, yet: " + e, e);
        return;
      }
      if (f == null) {
        assertEquals(wire.length, consumed, "null only at a clean end between frames");
        return;
      }
      checkWellFormed(f);
      byte[] again = codec.encode(f);
      assertArrayEquals(Arrays.copyOfRange(wire, consumed, consumed + again.length), again,
          "a decoded frame re-encodes to the bytes it came from");
      consumed += again.length;
    }
  }

  private static void connection(byte[] wire) throws Exception {
    List<Frame> seen = new ArrayList<>();
    ByteArrayOutputStream sent = new ByteArrayOutputStream();
    FrameConnection conn = new FrameConnection(new ByteArrayInputStream(wire), sent, "fuzz", MAX_PAYLOAD);
    conn.start(seen::add);
    Throwable cause;
    try {
      cause = conn.closed().get(10, TimeUnit.SECONDS);
    } catch (TimeoutException e) {
      fail("the connection did not end within 10 s on " + wire.length + " bytes of input");
      return;
    }
    assertTrue(cause == null || cause instanceof ProtocolException || cause instanceof FrameConnection.GoAwayException,
        "a peer's bytes end the connection cleanly, with a protocol error or with its GOAWAY, not with " + cause);
    for (Frame f : seen) {
      checkWellFormed(f);
      assertNotEquals(FrameType.GOAWAY, f.type(), "GOAWAY is handled by the connection itself");
    }
    // What the connection wrote back is at most one GOAWAY (for a protocol error), never garbage.
    byte[] out = sent.toByteArray();
    if (out.length > 0) {
      Frame goAway = new FrameCodec(MAX_PAYLOAD).read(new ByteArrayInputStream(out));
      assertEquals(FrameType.GOAWAY, goAway.type());
      assertEquals(Frame.HEADER_SIZE + goAway.payload().length, out.length, "one frame only");
      assertTrue(cause instanceof ProtocolException, "a GOAWAY goes out only for a protocol error");
    }
  }

  private static void checkWellFormed(Frame f) {
    assertTrue(f.payload().length <= MAX_PAYLOAD, "payload within the limit");
    assertTrue(f.flags() >= 0 && f.flags() <= 0xFF);
    switch (f.type()) {
      case GOAWAY -> assertEquals(0, f.streamId(), "GOAWAY only on stream 0");
      case WINDOW_UPDATE -> {
        assertNotEquals(0, f.streamId());
        assertTrue(f.windowIncrement() > 0, "a credit increment is positive");
      }
      default -> assertNotEquals(0, f.streamId(), f.type() + " never on stream 0");
    }
  }
}
