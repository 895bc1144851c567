UPDATE product SET image_url = '/public/img/' || substr(image_url, length('/public/img/products/') + 1)
WHERE product_id IN ('100010090091', '100010090092', '100010090093', '100010090094', '100010090095')
  AND image_url IN ('/public/img/products/gift.svg', '/public/img/products/tea.svg',
                    '/public/img/products/mug.svg', '/public/img/products/notebook.svg',
                    '/public/img/products/umbrella.svg');
