// Attachments: SQL shared by the SQLite and PostgreSQL stores (included into each
// backend's `queries` module; see `backend.rs`).
//
// An attachment row names a file in the object store (`storage_key`) and the message
// that carries it (`conversation_id`, `seq`); the message and the row are stored in one
// transaction, so no reader ever sees one without the other. Reads attach the files to
// the messages of a page with one query (`attach_files`). Retention deletes rows with
// their messages and queues their keys in `attachment_trash` (see `retention.rs`).

/// Stores `message` and its file in one transaction. A retry (same conversation, sender and
/// `client_msg_id`) returns the first message with its files, stores nothing.
pub async fn attach(
    pool: &Pool,
    message: &crate::NewMessage,
    file: &crate::NewAttachment,
) -> Result<crate::Appended> {
    let conversation = message.conversation_id;
    let sender = &message.sender;
    let mut tx = pool.begin().await?;
    if let Some(mut first) =
        stored_copy(&mut tx, conversation, sender, message.client_msg_id.as_deref()).await?
    {
        attach_files(&mut tx, std::slice::from_mut(&mut first.message), true).await?;
        return Ok(first);
    }
    check_member(&mut tx, conversation, sender).await?;
    let mut stored = insert_message(
        &mut tx,
        conversation,
        sender,
        message.kind,
        &message.body,
        Extras {
            client_msg_id: message.client_msg_id.as_deref(),
            author: message.author.as_deref(),
            ref_seq: None,
        },
    )
    .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO attachments (conversation_id, seq, uploader_id, name, content_type, size,
                                  sha256, created_at, storage_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(conversation)
    .bind(stored.seq)
    .bind(sender.id)
    .bind(&file.name)
    .bind(&file.content_type)
    .bind(file.size)
    .bind(&file.sha256)
    .bind(stored.ts)
    .bind(&file.storage_key)
    .fetch_one(&mut *tx)
    .await?;
    stored.attachments = vec![switchboard_protocol::Attachment {
        id,
        name: file.name.clone(),
        content_type: file.content_type.clone(),
        size: file.size,
        sha256: file.sha256.clone(),
    }];
    let members: Vec<i64> =
        sqlx::query_scalar("SELECT user_id FROM members WHERE conversation_id = $1")
            .bind(conversation)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(crate::Appended { message: stored, duplicate: false, members })
}

/// Attachment `id` as `viewer` may download it: `NotFound` alike when it does not exist,
/// when `viewer` is not a member of its conversation, and when its message was deleted.
pub async fn attachment(pool: &Pool, id: i64, viewer: &User) -> Result<crate::StoredAttachment> {
    let row = sqlx::query(
        "SELECT a.id, a.conversation_id, a.seq, u.username, a.name, a.content_type, a.size,
                a.sha256, a.created_at, a.storage_key
         FROM attachments a
         JOIN messages m ON m.conversation_id = a.conversation_id AND m.seq = a.seq
         JOIN members mb ON mb.conversation_id = a.conversation_id AND mb.user_id = $2
         JOIN users u ON u.id = a.uploader_id
         WHERE a.id = $1 AND m.deleted_at IS NULL",
    )
    .bind(id)
    .bind(viewer.id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("attachment {id}")))?;
    Ok(crate::StoredAttachment {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        seq: row.try_get("seq")?,
        uploader: row.try_get("username")?,
        name: row.try_get("name")?,
        content_type: row.try_get("content_type")?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        created_at: row.try_get("created_at")?,
        storage_key: row.try_get("storage_key")?,
    })
}

/// Fills in the `attachments` of `messages` (of any conversations) with one query. With
/// `for_people`, a deleted message shows none (its files stay stored, like its text, for
/// the compliance export, until retention removes them).
pub async fn attach_files(conn: &mut Conn, messages: &mut [Message], for_people: bool) -> Result<()> {
    let mut wanted: std::collections::BTreeMap<i64, BTreeSet<i64>> =
        std::collections::BTreeMap::new();
    for m in messages.iter().filter(|m| m.is_content() && !(for_people && m.deleted)) {
        wanted.entry(m.conversation_id).or_default().insert(m.seq);
    }
    if wanted.is_empty() {
        return Ok(());
    }
    // `(conversation_id = $a AND seq IN ($b, ..)) OR ..`: numbered placeholders only.
    let mut next = 0;
    let mut placeholder = || {
        next += 1;
        format!("${next}")
    };
    let clauses: Vec<String> = wanted
        .values()
        .map(|seqs| {
            let c = placeholder();
            let list = seqs.iter().map(|_| placeholder()).collect::<Vec<_>>().join(", ");
            format!("(conversation_id = {c} AND seq IN ({list}))")
        })
        .collect();
    let sql = format!(
        "SELECT id, conversation_id, seq, name, content_type, size, sha256 FROM attachments
         WHERE {} ORDER BY id",
        clauses.join(" OR ")
    );
    let mut query = sqlx::query(&sql);
    for (conversation, seqs) in &wanted {
        query = query.bind(*conversation);
        for seq in seqs {
            query = query.bind(*seq);
        }
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut found: std::collections::BTreeMap<(i64, i64), Vec<switchboard_protocol::Attachment>> =
        std::collections::BTreeMap::new();
    for row in &rows {
        found.entry((row.try_get("conversation_id")?, row.try_get("seq")?)).or_default().push(
            switchboard_protocol::Attachment {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                content_type: row.try_get("content_type")?,
                size: row.try_get("size")?,
                sha256: row.try_get("sha256")?,
            },
        );
    }
    for m in messages.iter_mut() {
        // Deleted messages were not asked for when reading for people.
        if let Some(files) = found.remove(&(m.conversation_id, m.seq)) {
            m.attachments = files;
        }
    }
    Ok(())
}

pub async fn attachment_trash(pool: &Pool, limit: u32) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT storage_key FROM attachment_trash ORDER BY queued_at, storage_key LIMIT $1",
    )
    .bind(i64::from(limit.clamp(1, MAX_PAGE)))
    .fetch_all(pool)
    .await?)
}

pub async fn forget_attachment_trash(pool: &Pool, keys: &[String]) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let list = (0..keys.len()).map(|i| format!("${}", i + 1)).collect::<Vec<_>>().join(", ");
    let sql = format!("DELETE FROM attachment_trash WHERE storage_key IN ({list})");
    let mut query = sqlx::query(&sql);
    for key in keys {
        query = query.bind(key);
    }
    query.execute(pool).await?;
    Ok(())
}

/// Which of `keys` an attachment row or the trash names.
pub async fn known_attachment_keys(pool: &Pool, keys: &[String]) -> Result<Vec<String>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let list = (0..keys.len()).map(|i| format!("${}", i + 1)).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT storage_key FROM attachments WHERE storage_key IN ({list})
         UNION SELECT storage_key FROM attachment_trash WHERE storage_key IN ({list})"
    );
    let mut query = sqlx::query_scalar(&sql);
    for key in keys {
        query = query.bind(key);
    }
    Ok(query.fetch_all(pool).await?)
}
