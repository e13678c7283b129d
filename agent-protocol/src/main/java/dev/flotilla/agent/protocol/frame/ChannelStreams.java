package dev.flotilla.agent.protocol.frame;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.nio.channels.NotYetConnectedException;
import java.nio.channels.SocketChannel;

/**
 * Blocking streams over a socket channel that read and write concurrently. The JDK's
 * {@code Channels.newInputStream/newOutputStream} take the channel's blocking lock for every
 * read and write, so a reader blocked in {@code read} stalls every writer: no good for a
 * full-duplex connection. Closing the output stream of a socket only shuts its output down;
 * closing the input stream closes the channel.
 */
public final class ChannelStreams {
  private ChannelStreams() {}

  public static InputStream input(ByteChannel ch) {
    return new InputStream() {
      @Override
      public int read() throws IOException {
        byte[] one = new byte[1];
        int n = read(one, 0, 1);
        return n < 0 ? -1 : one[0] & 0xFF;
      }

      @Override
      public int read(byte[] b, int off, int len) throws IOException {
        if (len == 0) return 0;
        int n;
        do {
          n = ch.read(ByteBuffer.wrap(b, off, len));
        } while (n == 0);
        return n;
      }

      @Override
      public void close() throws IOException {
        ch.close();
      }
    };
  }

  public static OutputStream output(ByteChannel ch) {
    return new OutputStream() {
      @Override
      public void write(int b) throws IOException {
        write(new byte[] {(byte) b}, 0, 1);
      }

      @Override
      public void write(byte[] b, int off, int len) throws IOException {
        ByteBuffer buf = ByteBuffer.wrap(b, off, len);
        while (buf.hasRemaining()) ch.write(buf);
      }

      /** Half-closes a socket (the peer sees EOF, reading goes on); closes any other channel. */
      @Override
      public void close() throws IOException {
        if (ch instanceof SocketChannel sc && sc.isOpen()) {
          try {
            sc.shutdownOutput();
            return;
          } catch (NotYetConnectedException | IOException e) {
            // fall through to a full close
          }
        }
        ch.close();
      }
    };
  }
}
