package dev.flotilla.agent.protocol.frame;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

class FrameCodecTest {

  private final FrameCodec codec = new FrameCodec(1024);

  private static byte[] header(long length, int stream, int type, int flags) {
    return ByteBuffer.allocate(10).putInt((int) length).putInt(stream).put((byte) type).put((byte) flags).array();
  }

  private static byte[] concat(byte[]... parts) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (byte[] p : parts) out.writeBytes(p);
    return out.toByteArray();
  }

  private ProtocolException rejects(byte[] bytes) {
    return assertThrows(ProtocolException.class, () -> codec.read(new ByteArrayInputStream(bytes)));
  }

  @Test
  void everyFrameKindRoundTrips() throws IOException {
    List<Frame> frames = List.of(
        Frame.request(1, new byte[] {1, 2, 3}),
        Frame.response(1, new byte[0]),
        Frame.data(7, false, "out".getBytes(), false),
        Frame.data(7, true, new byte[0], true),
        Frame.windowUpdate(7, true, 65536),
        Frame.goAway("bye"),
        Frame.data(Integer.MAX_VALUE, false, new byte[1024], false));
    ByteArrayOutputStream wire = new ByteArrayOutputStream();
    for (Frame f : frames) wire.writeBytes(codec.encode(f));
    ByteArrayInputStream in = new ByteArrayInputStream(wire.toByteArray());
    for (Frame expected : frames) {
      Frame got = codec.read(in);
      assertEquals(expected.streamId(), got.streamId());
      assertEquals(expected.type(), got.type());
      assertEquals(expected.flags(), got.flags());
      assertArrayEquals(expected.payload(), got.payload());
    }
    assertNull(codec.read(in), "a clean end between frames reads as null");
  }

  @Test
  void headerLayoutIsBigEndianLengthStreamTypeFlags() {
    byte[] bytes = codec.encode(Frame.data(0x01020304, true, new byte[] {9}, true));
    assertArrayEquals(new byte[] {0, 0, 0, 1, 1, 2, 3, 4, 3, 3, 9}, bytes);
  }

  @Test
  void flagsAndPayloadAccessors() throws IOException {
    Frame w = codec.read(new ByteArrayInputStream(codec.encode(Frame.windowUpdate(3, false, 1234))));
    assertEquals(1234, w.windowIncrement());
    assertFalse(w.stderr());
    Frame g = codec.read(new ByteArrayInputStream(codec.encode(Frame.goAway("reason ü"))));
    assertEquals("reason ü", g.reason());
  }

  @Test
  void oversizedFramesAreRefusedBeforeAllocation() {
    assertTrue(rejects(header(1025, 1, 1, 0)).getMessage().contains("exceeds the limit of 1024"));
    assertTrue(rejects(header(0xFFFF_FFFFL, 1, 1, 0)).getMessage().contains("4294967295 bytes"));
    assertThrows(IllegalArgumentException.class, () -> codec.encode(Frame.request(1, new byte[1025])));
  }

  @Test
  void truncatedInputIsRefused() {
    byte[] full = codec.encode(Frame.request(1, new byte[100]));
    assertTrue(rejects(Arrays.copyOf(full, 4)).getMessage().contains("truncated frame header"));
    assertTrue(rejects(Arrays.copyOf(full, 60)).getMessage().contains("after 50 of 100 payload bytes"));
  }

  @Test
  void unknownTypesAreRefused() {
    for (int type : new int[] {0, 6, 99, 255}) {
      assertEquals("unknown frame type " + type, rejects(header(0, 1, type, 0)).getMessage());
    }
  }

  @Test
  void framesOnTheWrongStreamOrWithBadWindowsAreRefused() {
    assertTrue(rejects(header(0, 0, 1, 0)).getMessage().contains("on stream 0"));
    assertTrue(rejects(header(0, 0, 3, 0)).getMessage().contains("on stream 0"));
    assertTrue(rejects(header(0, 3, 5, 0)).getMessage().contains("GOAWAY on stream 3"));
    assertTrue(rejects(concat(header(2, 3, 4, 0), new byte[2])).getMessage().contains("payload of 2 bytes, expected 4"));
    assertTrue(rejects(concat(header(4, 3, 4, 0), new byte[4])).getMessage().contains("not a positive int"));
    assertTrue(rejects(concat(header(4, 3, 4, 0), new byte[] {(byte) 0x80, 0, 0, 0})).getMessage()
        .contains("not a positive int"));
    assertTrue(rejects(concat(header(4, 0, 4, 0), new byte[] {0, 0, 0, 1})).getMessage().contains("stream 0"));
  }

  @Test
  void randomBytesNeverEscapeAsAnythingButProtocolException() {
    assertTimeoutPreemptively(Duration.ofSeconds(30), () -> {
      Random random = new Random(1);
      int frames = 0;
      for (int i = 0; i < 20_000; i++) {
        byte[] garbage = new byte[random.nextInt(64)];
        random.nextBytes(garbage);
        ByteArrayInputStream in = new ByteArrayInputStream(garbage);
        try {
          while (codec.read(in) != null) frames++;
        } catch (ProtocolException expected) {
          // the only acceptable failure
        }
      }
      assertTrue(frames >= 0);
    });
  }
}
