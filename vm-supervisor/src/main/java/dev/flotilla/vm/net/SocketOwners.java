package dev.flotilla.vm.net;

import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;

/**
 * Which uid owns the socket a packet or connection came from, as the kernel's socket tables of
 * the node's own network namespace list it ({@code /proc/net/udp}, {@code udp6}, {@code tcp},
 * {@code tcp6}). A sandbox's DNS reaches its proxy only through the host's redirect of that
 * sandbox's uid; the proxy checks the sender against the same uid, so that no other uid's socket
 * (another sandbox's network helper, or anything else on the host) is answered by it, nor can
 * make it grant, even when it finds the proxy's port (a redirect left stale by a dead node points
 * at a port some other proxy may take).
 */
final class SocketOwners {
  /** The node's own tables: {@code /proc/net} is the reading process's network namespace. */
  static final SocketOwners HOST = new SocketOwners(Path.of("/proc/net"));

  private final Path procNet;

  SocketOwners(Path procNet) {
    this.procNet = procNet;
  }

  /** The port a redirected TCP connection's client socket still names as its remote end. */
  static final int DNS_PORT = 53;

  /** TCP's LISTEN state in the tables' {@code st} column: a listener sends no query. */
  private static final String TCP_LISTEN = "0A";

  /**
   * The uids of the sockets bound to {@code peer}'s port on its address or on the wildcard
   * address; for TCP only connections (no listener) whose remote end is {@code to} or port 53.
   * The host's redirect rewrites the packets only: the client's socket keeps the destination it
   * connected to, some server's port 53, as its remote end. Empty when there is none (gone
   * already).
   */
  Set<Long> owners(boolean tcp, InetSocketAddress peer, InetSocketAddress to) throws IOException {
    Set<Long> out = new HashSet<>();
    for (String table : tcp ? new String[] {"tcp", "tcp6"} : new String[] {"udp", "udp6"}) {
      Path p = procNet.resolve(table);
      if (!Files.exists(p)) continue;
      out.addAll(owners(Files.readString(p), peer, tcp ? to : null));
    }
    return out;
  }

  /** The same from one table's text; {@code to} null (UDP) matches any remote end and state. */
  static Set<Long> owners(String table, InetSocketAddress peer, InetSocketAddress to) {
    Set<Long> out = new HashSet<>();
    for (String line : table.split("\n")) {
      String[] f = line.trim().split("\\s+");
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
      if (f.length < 8 || !f[0].endsWith(":")) continue;
      InetSocketAddress local = endpoint(f[1]);
      if (local == null || local.getPort() != peer.getPort()) continue;
      if (!local.getAddress().isAnyLocalAddress() && !local.getAddress().equals(peer.getAddress())) continue;
      if (to != null) {
        if (f[3].equalsIgnoreCase(TCP_LISTEN)) continue;
        InetSocketAddress remote = endpoint(f[2]);
        if (remote == null || !(remote.getPort() == DNS_PORT || remote.equals(to))) continue;
      }
      try {
        out.add(Long.parseLong(f[7]));
      } catch (NumberFormatException e) {
        // not a socket line
      }
    }
    return out;
  }

  /**
   * {@code ADDR:PORT} in hex as the kernel writes it: the address as 32-bit words in the host's
   * byte order (little-endian here), the port big-endian. An IPv4-mapped IPv6 address comes out as
   * its IPv4 address ({@link InetAddress#getByAddress} does that), as Java gives a peer's.
   */
  static InetSocketAddress endpoint(String hex) {
    int colon = hex.indexOf(':');
    if (colon != 8 && colon != 32) return null;
    try {
      byte[] a = new byte[colon / 2];
      for (int word = 0; word < a.length / 4; word++) {
        for (int i = 0; i < 4; i++) {
          int at = word * 8 + (3 - i) * 2;
          a[word * 4 + i] = (byte) Integer.parseInt(hex.substring(at, at + 2), 16);
        }
      }
      return new InetSocketAddress(InetAddress.getByAddress(a), Integer.parseInt(hex.substring(colon + 1), 16));
    } catch (NumberFormatException | IOException | IndexOutOfBoundsException e) {
      return null;
    }
  }
}
