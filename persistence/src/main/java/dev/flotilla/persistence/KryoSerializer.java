package dev.flotilla.persistence;

import dev.flotilla.persistence.kryo.KryoCodec;
import org.apache.pekko.actor.ExtendedActorSystem;
import org.apache.pekko.serialization.JSerializer;

/**
 * Pekko serializer for events, snapshots and cluster messages: everything implementing
 * {@link FlotillaSerializable} (binding in this module's {@code reference.conf}).
 *
 * <p><b>Identifier: {@value #IDENTIFIER}.</b> It is stored next to every event and snapshot
 * ({@code event_ser_id}); never change it.
 *
 * <p><b>Registration is required.</b> Each module lists its classes with stable ids in its own
 * {@code reference.conf}:
 *
 * <pre>
 * flotilla.serialization.kryo.classes {
 *   "dev.flotilla.sandbox.SandboxEntity$Created" = 1001
 * }
 * </pre>
 *
 * Id ranges: 0–9 Kryo (primitives, wrappers, String); 10–999 built-ins of this module
 * (collections, Optional, java.time, UUID, actor refs, stream refs, StatusReply, ByteString, Done); 1000–1999 core-actors;
 * 2000–2999 cluster-node; 3000–3999 vm-supervisor and sandbox-protocol; 4000–4999 agent-protocol / guest-agent;
 * 5000–8999 free for new modules (claim a block here); 9000–9999 test code of any module.
 * Ids are forever: never reuse, renumber or remove one that may be in stored bytes.
 *
 * <p>Records use a tagged format (component names with length-prefixed values) so components can
 * be added or removed without breaking replay; enums are stored by name; other classes use Kryo's
 * chunked CompatibleFieldSerializer. No manifest: the class id is inside the bytes.
 */
public final class KryoSerializer extends JSerializer {
  public static final int IDENTIFIER = 7070;

  private final KryoCodec codec;

  public KryoSerializer(ExtendedActorSystem system) {
    this.codec =
        new KryoCodec(system.settings().config(), system.dynamicAccess().classLoader(), () -> system);
  }

  @Override
  public int identifier() {
    return IDENTIFIER;
  }

  @Override
  public boolean includeManifest() {
    return false;
  }

  @Override
  public byte[] toBinary(Object o) {
    try {
      return codec.toBinary(o);
    } catch (RuntimeException e) {
      throw new IllegalArgumentException(
          "Kryo cannot serialize " + o.getClass().getName() + ": " + e.getMessage(), e);
    }
  }

  @Override
  public Object fromBinaryJava(byte[] bytes, Class<?> manifest) {
    try {
      return codec.fromBinary(bytes);
    } catch (RuntimeException e) {
      throw new IllegalArgumentException(
          "Kryo cannot deserialize " + bytes.length + " bytes: " + e.getMessage(), e);
    }
  }
}
