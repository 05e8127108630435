// Editing and deleting one's own messages: SQL shared by the SQLite and PostgreSQL
// stores (included into each backend's `queries` module; see `backend.rs`).
//
// A change is itself a message: an `edit` or `delete` entry with the next seq of the
// conversation and `ref_seq` naming the message changed, so a client that backfills by
// seq sees it and converges. In the same transaction the changed row is updated (its
// `body` is the new text, the first text kept in `original_body`; or `deleted_at` is
// set), so history and search show the message as it reads now.

/// Message `$3`:`$4` reads `$1` from time `$2` on.
pub const EDIT_MESSAGE: &str =
    "UPDATE messages SET original_body = COALESCE(original_body, body), body = $1, edited_at = $2
     WHERE conversation_id = $3 AND seq = $4";

/// Message `$2`:`$3` is deleted at time `$1`, and so are its edit entries: they hold its
/// earlier texts.
pub const DELETE_MESSAGE: &str = "UPDATE messages SET deleted_at = $1
     WHERE conversation_id = $2 AND (seq = $3 OR (kind = 'edit' AND ref_seq = $3))";

/// Edits (`Some(new text)`) or deletes (`None`) message `seq` of `conversation`, which
/// `editor` must have sent. Returns the entry recording it, with the members to fan it
/// out to. A retry with the same `client_msg_id` returns the first entry (`duplicate`).
pub async fn change_message(
    pool: &Pool,
    editor: &User,
    conversation: i64,
    seq: i64,
    body: Option<&str>,
    client_msg_id: Option<&str>,
) -> Result<crate::Appended> {
    let mut tx = pool.begin().await?;
    if let Some(first) = stored_copy(&mut tx, conversation, editor, client_msg_id).await? {
        return Ok(first);
    }
    check_member(&mut tx, conversation, editor).await?;
    let (sender, kind) = lock_live_message(&mut tx, conversation, seq).await?;
    if sender != editor.id {
        return Err(StoreError::NotAuthor { conversation, seq });
    }
    if !matches!(MessageKind::parse(&kind), Some(MessageKind::Text | MessageKind::Broadcast)) {
        return Err(StoreError::Invalid(format!("a {kind} message cannot be changed")));
    }
    let entry_kind = if body.is_some() { MessageKind::Edit } else { MessageKind::Delete };
    let entry = insert_message(
        &mut tx,
        conversation,
        editor,
        entry_kind,
        body.unwrap_or(""),
        Extras { client_msg_id, author: None, ref_seq: Some(seq) },
    )
    .await?;
    let changed = match body {
        Some(text) => sqlx::query(EDIT_MESSAGE).bind(text),
        None => sqlx::query(DELETE_MESSAGE),
    };
    changed.bind(entry.ts).bind(conversation).bind(seq).execute(&mut *tx).await?;
    let members: Vec<i64> =
        sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = $1")
            .bind(conversation)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(crate::Appended { message: entry, duplicate: false, members })
}
