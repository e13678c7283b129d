package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.persistence.kryo.KryoCodec;
import dev.flotilla.sandbox.protocol.DirPage;
import dev.flotilla.sandbox.protocol.FsChange;
import dev.flotilla.sandbox.protocol.FsEntry;
import dev.flotilla.sandbox.protocol.FsValue;
import dev.flotilla.sandbox.protocol.WatchStarted;
import java.time.Instant;
import java.util.List;
import org.apache.pekko.serialization.SerializationExtension;
import org.apache.pekko.actor.testkit.typed.javadsl.ActorTestKit;
import org.junit.jupiter.api.Test;

/**
 * The file system answers cross nodes (a caller on one node, the sandbox's VM on another): each
 * is bound to the Kryo serializer and comes back equal.
 */
class FsValuesKryoTest {

  static List<FsValue> values() {
    FsEntry file = new FsEntry("f.txt", "a/f.txt", FsEntry.Type.FILE, 5, 0640, Instant.parse("2026-12-03T05:00:00.123Z"), "");
    FsEntry link = new FsEntry("l", "/a/l", FsEntry.Type.SYMLINK, 5, 0777, Instant.EPOCH, "../etc");
    return List.of(file, link, new DirPage("/a", List.of(file, link), "a/l", true), new DirPage("/e", List.of(), "", false),
        new WatchStarted("/a", 3, true), new FsChange(FsChange.Kind.OVERFLOW, "", 12), new FsChange(FsChange.Kind.DELETED, "x", 0));
  }

  @Test
  void everyFileSystemValueRoundTripsThroughKryo() {
    KryoCodec codec = new KryoCodec(ConfigFactory.load(), getClass().getClassLoader(), () -> null);
    for (FsValue v : values()) assertEquals(v, codec.fromBinary(codec.toBinary(v)), v.toString());
  }

  @Test
  void pekkoPicksTheKryoSerializerForThem() {
    ActorTestKit kit = ActorTestKit.create();
    try {
      var serialization = SerializationExtension.get(kit.system().classicSystem());
      for (FsValue v : values()) {
        assertEquals("KryoSerializer", serialization.findSerializerFor(v).getClass().getSimpleName(), v.toString());
      }
    } finally {
      kit.shutdownTestKit();
    }
  }
}
