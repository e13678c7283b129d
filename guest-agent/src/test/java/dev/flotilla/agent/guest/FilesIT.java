package dev.flotilla.agent.guest;

import static dev.flotilla.agent.guest.Calls.failure;
import static dev.flotilla.agent.guest.Calls.get;
import static dev.flotilla.agent.guest.TestAgent.DEADLINE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.agent.protocol.client.AgentClient;
import dev.flotilla.agent.protocol.client.AgentException.Code;
import dev.flotilla.agent.protocol.client.FileChunk;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class FilesIT {

  private TestAgent agent;
  private AgentClient client;

  @BeforeEach
  void start() throws Exception {
    agent = TestAgent.start("sbx-files", 1);
    client = agent.handshaken();
  }

  @AfterEach
  void stop() throws Exception {
    agent.close();
  }

  @Test
  void writeAndReadSeveralMegabytes() throws Exception {
    byte[] data = new byte[5 * 1024 * 1024 + 12345];
    new Random(42).nextBytes(data);
    String path = agent.dir.resolve("deep/er/blob.bin").toString();
    assertEquals(data.length, get(client.writeFile(path, new ByteArrayInputStream(data), 0600, DEADLINE)));
    assertArrayEquals(data, Files.readAllBytes(Path.of(path)));
    assertEquals("rw-------", PosixFilePermissions.toString(Files.getPosixFilePermissions(Path.of(path))));

    ByteArrayOutputStream out = new ByteArrayOutputStream();
    assertEquals(data.length, get(client.readFile(path, out, DEADLINE)));
    assertArrayEquals(data, out.toByteArray());

    FileChunk tail = get(client.readFileChunk(path, data.length - 100, 1000, DEADLINE));
    assertArrayEquals(Arrays.copyOfRange(data, data.length - 100, data.length), tail.data());
    assertTrue(tail.eof());
    assertEquals(data.length, tail.fileSize());
    FileChunk head = get(client.readFileChunk(path, 0, 10, DEADLINE));
    assertArrayEquals(Arrays.copyOf(data, 10), head.data());
    assertFalse(head.eof());
  }

  @Test
  void rewriteTruncatesAndEmptyFilesWork() throws Exception {
    String path = agent.dir.resolve("f.txt").toString();
    get(client.writeFile(path, new ByteArrayInputStream("a long first version".getBytes()), 0, DEADLINE));
    assertEquals(5, get(client.writeFile(path, new ByteArrayInputStream("short".getBytes()), 0, DEADLINE)));
    assertEquals("short", Files.readString(Path.of(path)));
    assertEquals("rw-r--r--", PosixFilePermissions.toString(Files.getPosixFilePermissions(Path.of(path))));
    assertEquals(0, get(client.writeFile(path, new ByteArrayInputStream(new byte[0]), 0, DEADLINE)));
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    assertEquals(0, get(client.readFile(path, out, DEADLINE)));
  }

  @Test
  void badPathsAreReported() throws Exception {
    failure(Code.NOT_FOUND, client.readFile(agent.dir.resolve("missing").toString(), new ByteArrayOutputStream(), DEADLINE));
    failure(Code.INVALID_ARGUMENT, client.readFileChunk("relative/path", 0, 10, DEADLINE));
    failure(Code.INVALID_ARGUMENT, client.writeFile("relative", new ByteArrayInputStream(new byte[1]), 0, DEADLINE));
  }
}
