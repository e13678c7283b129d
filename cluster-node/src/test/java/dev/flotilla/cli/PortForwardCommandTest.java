package dev.flotilla.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.net.InetAddress;
import org.junit.jupiter.api.Test;

/** The port mappings of {@code flotilla port-forward}, as kubectl reads them. */
class PortForwardCommandTest {
  @Test
  void mappingsReadLikeKubectls() {
    assertEquals(new PortForwardCommand.Mapping(8080, 8080), PortForwardCommand.parse("8080"));
    assertEquals(new PortForwardCommand.Mapping(8080, 80), PortForwardCommand.parse("8080:80"));
    assertEquals(new PortForwardCommand.Mapping(0, 80), PortForwardCommand.parse(":80"));
    assertEquals(new PortForwardCommand.Mapping(0, 80), PortForwardCommand.parse("0:80"));
  }

  @Test
  void addressesPrintAsTheyAreDialled() throws Exception {
    assertEquals("127.0.0.1:8080", PortForwardCommand.hostPort(InetAddress.getByName("127.0.0.1"), 8080));
    assertEquals("[::1]:8080", PortForwardCommand.hostPort(InetAddress.getByName("::1"), 8080));
    assertEquals("[::]:8080", PortForwardCommand.hostPort(InetAddress.getByName("::"), 8080));
    assertEquals("[fd00::1:2]:8080", PortForwardCommand.hostPort(InetAddress.getByName("fd00::1:2"), 8080));
  }
}
