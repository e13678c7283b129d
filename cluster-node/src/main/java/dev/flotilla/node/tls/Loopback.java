package dev.flotilla.node.tls;

import java.net.InetAddress;
import java.net.UnknownHostException;

/** Whether an interface or host name a node binds to is loopback only (127.0.0.0/8, ::1, a name resolving only there). */
final class Loopback {
  private Loopback() {}

  static boolean is(String host) {
    if (host == null || host.isBlank()) return false;
    try {
      InetAddress[] all = InetAddress.getAllByName(host);
      for (InetAddress a : all) {
        if (!a.isLoopbackAddress()) return false;
      }
      return all.length > 0;
    } catch (UnknownHostException e) {
      return false; // the bind fails later with its own message; no plaintext is served meanwhile
    }
  }
}
