package dev.flotilla.node.local;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.util.ArrayList;
import java.util.List;

/** Free TCP ports on the loopback interface, all distinct. */
final class Ports {
  private Ports() {}

  /**
   * {@code n} distinct ports free right now. The sockets stay open until all are picked, so no
   * port is handed out twice; another program may still take one before the node binds it.
   */
  static List<Integer> free(int n) throws IOException {
    List<ServerSocket> held = new ArrayList<>();
    try {
      List<Integer> out = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
        held.add(s);
        out.add(s.getLocalPort());
      }
      return out;
    } finally {
      for (ServerSocket s : held) s.close();
    }
  }
}
