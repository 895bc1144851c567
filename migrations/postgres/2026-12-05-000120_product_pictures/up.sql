-- The demo products' pictures become drawings (no emoji, no text): a picture an operator has
-- changed since is left alone.
UPDATE product SET image_url = '/public/img/products/' || substr(image_url, length('/public/img/') + 1)
WHERE product_id IN ('100010090091', '100010090092', '100010090093', '100010090094', '100010090095')
  AND image_url IN ('/public/img/gift.svg', '/public/img/tea.svg', '/public/img/mug.svg',
                    '/public/img/notebook.svg', '/public/img/umbrella.svg');
