package dev.flotilla.node.grpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.grpc.Status;
import java.nio.ByteBuffer;
import org.apache.pekko.grpc.GrpcServiceException;
import org.apache.pekko.util.ByteString;
import org.junit.jupiter.api.Test;

class GrpcMessageLimitTest {

  static byte[] message(int length) {
    ByteBuffer b = ByteBuffer.allocate(5 + length);
    b.put((byte) 0).putInt(length);
    return b.array();
  }

  static byte[] concat(byte[]... parts) {
    int n = 0;
    for (byte[] p : parts) n += p.length;
    ByteBuffer b = ByteBuffer.allocate(n);
    for (byte[] p : parts) b.put(p);
    return b.array();
  }

  /** Feeds {@code bytes} in chunks of {@code chunk} bytes (prefixes split across chunks too). */
  static void feed(GrpcMessageLimit.Checker c, byte[] bytes, int chunk) {
    for (int i = 0; i < bytes.length; i += chunk) {
      ByteString part = ByteString.fromArray(bytes, i, Math.min(chunk, bytes.length - i));
      assertEquals(part, c.accept(part).iterator().next(), "bytes pass unchanged");
    }
  }

  @Test
  void messagesUpToTheLimitPassWhateverTheChunking() {
    byte[] stream = concat(message(100), message(0), message(100), message(7));
    for (int chunk : new int[] {1, 2, 3, 5, 6, 64, 1000}) feed(new GrpcMessageLimit.Checker(100), stream, chunk);
  }

  @Test
  void aPrefixAnnouncingMoreThanTheLimitFailsAtOnceWithResourceExhausted() {
    // The second message claims 2 GiB; only its prefix arrives: refused before any of its body.
    byte[] stream = concat(message(10), new byte[] {0, 0x7f, (byte) 0xff, (byte) 0xff, (byte) 0xff});
    for (int chunk : new int[] {1, 4, 100}) {
      var e = assertThrows(GrpcServiceException.class, () -> feed(new GrpcMessageLimit.Checker(1 << 20), stream, chunk));
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().contains("2147483647 bytes is over this server's limit"), e.getStatus().getDescription());
    }
  }
}
