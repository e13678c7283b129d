package dev.flotilla.vm.net;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.DatagramSocket;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.Set;
import org.junit.jupiter.api.Test;

class SocketOwnersTest {
  static InetSocketAddress at(String address, int port) throws Exception {
    return new InetSocketAddress(InetAddress.getByName(address), port);
  }

  /** Lines as /proc/net/udp and tcp6 print them (uid in the eighth column). */
  static final String UDP = """
         sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
        1: 0F02000A:1388 08080808:0035 01 00000000:00000000 00:00000000 00000000 100000        0 1 2 0000000000000000 0
        2: 00000000:1389 00000000:0000 07 00000000:00000000 00:00000000 00000000 200000        0 1 2 0000000000000000 0
        3: 0100007F:138A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0
        """;
  static final String TCP6 = """
          sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0000000000000000FFFF00000100007F:1388 0000000000000000FFFF00000100007F:9C40 01 00000000:00000000 00:00000000 00000000 300000        0 1
           1: 00000000000000000000000001000000:1388 00000000000000000000000001000000:0035 01 00000000:00000000 00:00000000 00000000 400000        0 1
           2: 0000000000000000FFFF00000100007F:138C 0000000000000000FFFF00000302000A:0035 01 00000000:00000000 00:00000000 00000000 500000        0 1
           3: 00000000000000000000000000000000:138C 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 600000        0 1
        """;

  @Test
  void aSocketIsFoundByItsPortOnItsAddressOrTheWildcard() throws Exception {
    assertEquals(Set.of(100000L), SocketOwners.owners(UDP, at("10.0.2.15", 5000), null), "bound to 10.0.2.15:5000");
    assertEquals(Set.of(200000L), SocketOwners.owners(UDP, at("10.0.2.15", 5001), null), "bound to 0.0.0.0:5001");
    assertEquals(Set.of(), SocketOwners.owners(UDP, at("10.0.2.16", 5000), null), "another address, same port");
    assertEquals(Set.of(), SocketOwners.owners(UDP, at("10.0.2.15", 5003), null), "no such socket");
    assertEquals(Set.of(0L), SocketOwners.owners(UDP, at("127.0.0.1", 5002), null));
  }

  @Test
  void tcpCountsConnectionsToTheProxyOrAServersDnsPortAndMappedAddressesAreTheirIpv4() throws Exception {
    assertEquals(Set.of(300000L), SocketOwners.owners(TCP6, at("127.0.0.1", 5000), at("127.0.0.1", 40000)));
    assertEquals(Set.of(), SocketOwners.owners(TCP6, at("127.0.0.1", 5000), at("127.0.0.1", 40001)), "connected elsewhere");
    assertEquals(Set.of(400000L), SocketOwners.owners(TCP6, at("::1", 5000), at("::1", 53)));
  }

  @Test
  void aRedirectedTcpConnectionNamesTheServerItAskedAndNoListenerCounts() throws Exception {
    // connected to 10.0.2.3:53, redirected to the proxy at 127.0.0.1:40000; [::]:5004 listens
    assertEquals(Set.of(500000L), SocketOwners.owners(TCP6, at("127.0.0.1", 5004), at("127.0.0.1", 40000)));
  }

  @Test
  void theHostsTablesNameTheOwnerOfARealSocket() throws Exception {
    long own = ((Number) java.nio.file.Files.getAttribute(java.nio.file.Path.of("/proc/self"), "unix:uid")).longValue();
    try (DatagramSocket s = new DatagramSocket(at("127.0.0.1", 0))) {
      var found = SocketOwners.HOST.owners(false, at("127.0.0.1", s.getLocalPort()), at("127.0.0.1", 53));
      assertEquals(Set.of(own), found);
    }
    assertTrue(SocketOwners.HOST.owners(false, at("127.0.0.1", 1), at("127.0.0.1", 53)).isEmpty());
  }
}
