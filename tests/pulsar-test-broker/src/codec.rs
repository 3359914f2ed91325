//! Frame codec: splits a byte stream into Pulsar frames and builds the frames the broker sends.
//!
//! A frame is `[totalSize u32][commandSize u32][BaseCommand]`, optionally followed, for SEND and
//! MESSAGE, by `[magic 0x0e01 u16][CRC32C u32][metadataSize u32][MessageMetadata][payload]` (the
//! checksum covers everything after itself). The magic/checksum pair is optional on the wire, as
//! in the Java broker. All lengths come from the peer, so each is checked before it is used:
//! a bad frame is a [`FrameError`], which closes that one connection.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message as _;

use crate::proto::{BaseCommand, MessageMetadata};

/// Largest frame accepted, as the Java broker's default (5 MiB message + 10 KiB of headers).
pub const MAX_FRAME_SIZE: usize = 5 * 1024 * 1024 + 10 * 1024;

/// Advertised to clients in CONNECTED as `max_message_size`.
pub const MAX_MESSAGE_SIZE: i32 = 5 * 1024 * 1024;

const MAGIC_CRC32C: u16 = 0x0e01;
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Why a frame from a client could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_SIZE} byte limit")]
    TooLarge(usize),
    #[error("frame is truncated or its sizes are inconsistent: {0}")]
    Malformed(&'static str),
    #[error("undecodable protobuf in frame: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("payload checksum mismatch (sent {sent:#010x}, computed {computed:#010x})")]
    Checksum { sent: u32, computed: u32 },
}

/// A payload carried by SEND: the metadata, decoded, and the raw (possibly batched) payload.
#[derive(Debug, Clone)]
pub struct Payload {
    pub metadata: MessageMetadata,
    pub metadata_raw: Bytes,
    pub data: Bytes,
}

/// One decoded frame.
#[derive(Debug)]
pub struct Frame {
    pub command: BaseCommand,
    pub payload: Option<Payload>,
}

/// Takes one complete frame off the front of `buf`, or `Ok(None)` when more bytes are needed.
///
/// The size check runs as soon as the 4-byte length is in, so an oversized length closes the
/// connection before the broker buffers anything for it.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let total = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if total > MAX_FRAME_SIZE {
        return Err(FrameError::TooLarge(total));
    }
    if total < 4 {
        return Err(FrameError::Malformed(
            "total size smaller than the command size field",
        ));
    }
    if buf.len() < 4 + total {
        // Reserve now so a large frame arrives without repeated reallocation.
        buf.reserve(4 + total - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut frame = buf.split_to(total).freeze();
    let command_size = frame.get_u32() as usize;
    if command_size > frame.remaining() {
        return Err(FrameError::Malformed("command size beyond the frame"));
    }
    let command = BaseCommand::decode(frame.split_to(command_size))?;
    let payload = if frame.has_remaining() {
        Some(decode_payload(frame)?)
    } else {
        None
    };
    Ok(Some(Frame { command, payload }))
}

fn decode_payload(mut rest: Bytes) -> Result<Payload, FrameError> {
    let checksum = if rest.len() >= 2 && rest[..2] == MAGIC_CRC32C.to_be_bytes() {
        rest.advance(2);
        if rest.len() < 4 {
            return Err(FrameError::Malformed("payload checksum truncated"));
        }
        Some(rest.get_u32())
    } else {
        None
    };
    if let Some(sent) = checksum {
        let computed = CRC32C.checksum(&rest);
        if computed != sent {
            return Err(FrameError::Checksum { sent, computed });
        }
    }
    if rest.len() < 4 {
        return Err(FrameError::Malformed("metadata size truncated"));
    }
    let metadata_size = rest.get_u32() as usize;
    if metadata_size > rest.len() {
        return Err(FrameError::Malformed("metadata size beyond the frame"));
    }
    let metadata_raw = rest.split_to(metadata_size);
    let metadata = MessageMetadata::decode(metadata_raw.clone())?;
    Ok(Payload {
        metadata,
        metadata_raw,
        data: rest,
    })
}

/// Encodes a frame without payload.
pub fn encode_command(command: &BaseCommand) -> Bytes {
    let command_size = command.encoded_len();
    let mut buf = BytesMut::with_capacity(8 + command_size);
    buf.put_u32((4 + command_size) as u32);
    buf.put_u32(command_size as u32);
    // Encoding into a BytesMut only fails for lack of capacity, which `put` grows on demand.
    command.encode_raw(&mut buf);
    buf.freeze()
}

/// Builds the payload section of an entry once, at publish time: magic, checksum, metadata size,
/// metadata, payload. Every dispatch of the entry then reuses these bytes as they are.
pub fn encode_payload_section(metadata_raw: &[u8], data: &[u8]) -> Bytes {
    let mut checked = BytesMut::with_capacity(4 + metadata_raw.len() + data.len());
    checked.put_u32(metadata_raw.len() as u32);
    checked.put_slice(metadata_raw);
    checked.put_slice(data);
    let crc = CRC32C.checksum(&checked);
    let mut buf = BytesMut::with_capacity(6 + checked.len());
    buf.put_u16(MAGIC_CRC32C);
    buf.put_u32(crc);
    buf.put_slice(&checked);
    buf.freeze()
}

/// Encodes a frame with a payload section built by [`encode_payload_section`].
pub fn encode_with_payload(command: &BaseCommand, payload_section: &[u8]) -> Bytes {
    let command_size = command.encoded_len();
    let mut buf = BytesMut::with_capacity(8 + command_size + payload_section.len());
    buf.put_u32((4 + command_size + payload_section.len()) as u32);
    buf.put_u32(command_size as u32);
    command.encode_raw(&mut buf);
    buf.put_slice(payload_section);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{base_command::Type, CommandPing};

    #[test]
    fn round_trips_a_payload_frame() {
        let command = BaseCommand {
            r#type: Type::Ping as i32,
            ping: Some(CommandPing {}),
            ..Default::default()
        };
        let metadata = MessageMetadata {
            producer_name: "p".into(),
            sequence_id: 7,
            publish_time: 1,
            ..Default::default()
        };
        let section = encode_payload_section(&metadata.encode_to_vec(), b"hello");
        let mut buf = BytesMut::from(&encode_with_payload(&command, &section)[..]);
        let frame = decode(&mut buf)
            .expect("valid frame")
            .expect("complete frame");
        let payload = frame.payload.expect("payload");
        assert_eq!(payload.metadata.sequence_id, 7);
        assert_eq!(&payload.data[..], b"hello");
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_bad_checksum_and_sizes() {
        let command = BaseCommand::default();
        let section = encode_payload_section(&MessageMetadata::default().encode_to_vec(), b"x");
        let mut bytes = encode_with_payload(&command, &section).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(decode(&mut buf), Err(FrameError::Checksum { .. })));

        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(decode(&mut buf), Err(FrameError::TooLarge(_))));

        let mut buf = BytesMut::from(&[0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0][..]);
        assert!(matches!(decode(&mut buf), Err(FrameError::Malformed(_))));

        let mut buf = BytesMut::from(&[0, 0, 0, 8, 0, 0][..]);
        assert!(matches!(decode(&mut buf), Ok(None)));
    }
}
